"""The security settings: defaults, parsing, refusals naming the variable (never a key)."""

from __future__ import annotations

import pytest

from realtime.apikeys import find_key, parse_api_keys, presented_key
from realtime.errors import ConfigError
from realtime.testing.gateway import make_settings


def test_defaults() -> None:
    s = make_settings()
    assert s.api_keys == ()
    assert s.ws_allowed_origins == s.cors_origins == ("*",)
    assert (s.ws_max_frames_per_second, s.ws_frame_burst) == (100, 200)
    assert (s.ws_max_subscriptions, s.ws_max_presence_joins) == (1000, 100)
    assert (s.ws_max_connections_per_user, s.ws_max_connections) == (100, 10000)
    assert (s.presence_resync_interval, s.event_name_max_length, s.json_max_depth) == (1, 200, 64)
    assert (s.handshake_timeout, s.http_max_request_line, s.http_max_header_bytes) == (
        10, 8190, 16384
    )  # fmt: skip


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"API_KEYS": "short-key"}, "API_KEYS"),
        ({"API_KEYS": "a-long-enough-key-1:"}, "API_KEYS"),
        ({"API_KEYS": "a-long-enough key-1"}, "API_KEYS"),
        ({"JSON_MAX_DEPTH": "501"}, "JSON_MAX_DEPTH"),
        ({"JSON_MAX_DEPTH": "0"}, "JSON_MAX_DEPTH"),
        ({"WS_MAX_FRAMES_PER_SECOND": "-1"}, "WS_MAX_FRAMES_PER_SECOND"),
        ({"WS_FRAME_BURST": "0"}, "WS_FRAME_BURST"),
        ({"HANDSHAKE_TIMEOUT_SECONDS": "0"}, "HANDSHAKE_TIMEOUT_SECONDS"),
        ({"HTTP_MAX_REQUEST_LINE_BYTES": "9000"}, "HTTP_MAX_REQUEST_LINE_BYTES"),
        ({"HTTP_MAX_HEADER_BYTES": "100"}, "HTTP_MAX_HEADER_BYTES"),
        ({"WS_MAX_CONNECTIONS": "many"}, "WS_MAX_CONNECTIONS"),
    ],
)
def test_bad_values_stop_the_start_naming_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as refused:
        make_settings(**env)
    assert refused.value.variable == variable
    for value in env.values():
        if "key" in value:
            assert value not in str(refused.value)


def test_keys_and_patterns() -> None:
    keys = parse_api_keys("API_KEYS", " first-key-123456 , second-key-12345:orders.*|news ,")
    assert [k.patterns for k in keys] == [(), ("orders.*", "news")]
    first, second = keys
    assert first.allows("anything") and second.allows("orders.") and second.allows("news")
    assert not second.allows("orders") and not second.allows("news.x")
    assert not second.allows("xorders.1")
    assert find_key(keys, "second-key-12345") is second
    assert find_key(keys, "second-key-1234") is None
    assert "second-key" not in repr(keys)


@pytest.mark.parametrize(
    ("headers", "key"),
    [
        ({"authorization": "Bearer k1"}, "k1"),
        ({"authorization": "bearer  k1 "}, "k1"),
        ({"x-api-key": "k2"}, "k2"),
        ({"authorization": "Basic k1", "x-api-key": "k2"}, "k2"),
        ({"authorization": "Bearer "}, None),
        ({}, None),
    ],
)
def test_presented_key(headers: dict[str, str], key: str | None) -> None:
    assert presented_key(headers) == key
