"""Webhook settings refuse what would not work, naming the variable; signing and backoff."""

from __future__ import annotations

import hashlib
import hmac
import time

import pytest

from realtime.config import load_settings
from realtime.errors import ConfigError
from realtime.testing.gateway import make_settings
from realtime.webhooks.events import WebhookEvent, body, signed_headers, verify
from realtime.webhooks.poster import BACKOFF_BASE, backoff

SECRET = "s" * 32
URL = "https://app.example/hooks"


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"WEBHOOK_URL": "ftp://app.example/hooks", "WEBHOOK_SECRET": SECRET}, "WEBHOOK_URL"),
        ({"WEBHOOK_URL": "not a url", "WEBHOOK_SECRET": SECRET}, "WEBHOOK_URL"),
        ({"WEBHOOK_URL": URL}, "WEBHOOK_SECRET"),
        ({"WEBHOOK_URL": URL, "WEBHOOK_SECRET": "short-secret"}, "WEBHOOK_SECRET"),
        ({"WEBHOOK_SECRET": SECRET}, "WEBHOOK_SECRET"),
        ({"WEBHOOK_EVENTS": "occupied,joined"}, "WEBHOOK_EVENTS"),
        ({"WEBHOOK_EVENTS": " , "}, "WEBHOOK_EVENTS"),
        ({"WEBHOOK_QUEUE_SIZE": "0"}, "WEBHOOK_QUEUE_SIZE"),
        ({"WEBHOOK_TIMEOUT_SECONDS": "abc"}, "WEBHOOK_TIMEOUT_SECONDS"),
        ({"WEBHOOK_TIMEOUT_SECONDS": "20"}, "WEBHOOK_CLAIM_SECONDS"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as caught:
        make_settings(**env)
    assert caught.value.variable == variable


def test_a_short_secret_is_not_repeated_in_the_error() -> None:
    with pytest.raises(ConfigError) as caught:
        make_settings(WEBHOOK_URL=URL, WEBHOOK_SECRET="hunter2-hunter2")
    assert "hunter2" not in str(caught.value)


def test_webhooks_are_refused_on_a_cluster_presence() -> None:
    env = {"PRESENCE_STORE": "redis", "REDIS_CLUSTER": "1", "BROADCAST_MQ_TYPE": "memory"}
    with pytest.raises(ConfigError) as caught:
        load_settings({**env, "WEBHOOK_URL": URL, "WEBHOOK_SECRET": SECRET}, env_file=None)
    assert caught.value.variable == "WEBHOOK_URL"


def test_the_events_word_list_maps_to_receiver_names() -> None:
    settings = make_settings(WEBHOOK_EVENTS="Vacated, member_added")
    assert settings.webhook_events == ("channel_vacated", "member_added")
    assert "secret" not in repr(make_settings(WEBHOOK_URL=URL, WEBHOOK_SECRET=SECRET)).lower()


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    data = body([WebhookEvent("member_added", "c", 1, id="1-0", user_id="u")])
    headers = signed_headers(SECRET, data, now=1_700_000_000)
    expected = hmac.new(SECRET.encode(), b"1700000000." + data, hashlib.sha256).hexdigest()
    assert headers["X-Realtime-Timestamp"] == "1700000000"
    assert headers["X-Realtime-Signature"] == f"v1={expected}"


def test_verify_refuses_a_changed_body_another_key_and_an_old_timestamp() -> None:
    data = b'{"events":[]}'
    now = time.time()
    h = signed_headers(SECRET, data, now=now)
    ts, sig = h["X-Realtime-Timestamp"], h["X-Realtime-Signature"]
    assert verify(SECRET, data, ts, sig)
    assert not verify(SECRET, data + b" ", ts, sig)
    assert not verify("t" * 32, data, ts, sig)
    old = signed_headers(SECRET, data, now=now - 3600)
    assert not verify(SECRET, data, old["X-Realtime-Timestamp"], old["X-Realtime-Signature"])
    assert not verify(SECRET, data, "soon", sig)


def test_backoff_grows_is_capped_and_jittered() -> None:
    first = [backoff(0) for _ in range(200)]
    assert all(BACKOFF_BASE / 2 <= d <= BACKOFF_BASE for d in first)
    assert len(set(first)) > 100  # jittered: instances do not retry in step
    late = [backoff(50, cap=10) for _ in range(200)]
    assert all(5 <= d <= 10 for d in late)
    assert backoff(3, cap=10) <= BACKOFF_BASE * 8


def test_the_start_line_names_the_receiver_host_only() -> None:
    from realtime.config import describe

    settings = make_settings(
        WEBHOOK_URL="https://user:pw@app.example:8443/hooks?token=abc", WEBHOOK_SECRET=SECRET
    )
    line = describe(settings)
    assert "webhooks=https://app.example:8443 (" in line
    assert "pw" not in line and "abc" not in line and SECRET not in line


def test_the_documented_verify_snippet_accepts_our_signature() -> None:
    from pathlib import Path

    doc = (Path(__file__).parents[2] / "docs" / "webhooks.md").read_text()
    snippet = doc.split("```python\n", 1)[1].split("```", 1)[0]
    scope: dict[str, object] = {}
    exec(snippet, scope)  # the reader's own code, as printed
    check = scope["verify"]
    assert callable(check)
    data = b'{"time_ms":1,"events":[]}'
    h = signed_headers(SECRET, data)
    assert check(SECRET, data, h["X-Realtime-Timestamp"], h["X-Realtime-Signature"])
    assert not check(SECRET, data + b"x", h["X-Realtime-Timestamp"], h["X-Realtime-Signature"])
