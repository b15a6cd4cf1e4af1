"""HISTORY_* settings: off by default, patterns as API keys write them, bounds named."""

from __future__ import annotations

import pytest

from realtime.backends import build_node
from realtime.config import describe, load_settings
from realtime.errors import ConfigError
from realtime.history.channels import HistoryChannels
from realtime.history.idempotency import MemoryIdempotency, RedisIdempotency
from realtime.history.memory import MemoryHistory

EMBEDDED = {"BROADCAST_MQ_TYPE": "memory", "PRESENCE_STORE": "memory"}


def test_off_by_default() -> None:
    settings = load_settings(EMBEDDED, env_file=None)
    assert settings.history_channels == ()
    assert (settings.history_size, settings.history_ttl) == (100, 300)
    assert build_node(settings).history is None
    assert "history" not in describe(settings)


def test_patterns_select_channels() -> None:
    settings = load_settings(
        {**EMBEDDED, "HISTORY_CHANNELS": "orders.*| news ,chat", "HISTORY_SIZE": "7"},
        env_file=None,
    )
    assert settings.history_channels == ("orders.*", "news", "chat")
    channels = HistoryChannels(settings.history_channels)
    assert "orders.1" in channels and "news" in channels and "chat" in channels
    assert "newsroom" not in channels and "orders" not in channels
    history = build_node(settings).history
    assert history is not None and isinstance(history.store, MemoryHistory)
    assert history.size == 7
    assert "history=orders.*|news|chat (last 7, 300s)" in describe(settings)


def test_no_patterns_match_nothing() -> None:
    channels = HistoryChannels(())
    assert not channels and "anything" not in channels


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("HISTORY_SIZE", "0"),
        ("HISTORY_SIZE", "100001"),
        ("HISTORY_SIZE", "many"),
        ("HISTORY_TTL_SECONDS", "0"),
        ("HISTORY_TTL_SECONDS", "2592001"),
        ("HISTORY_CHANNELS", "orders.* news"),
        ("IDEMPOTENCY_WINDOW_SECONDS", "0"),
        ("IDEMPOTENCY_WINDOW_SECONDS", "86401"),
    ],
)
def test_bad_value_names_the_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({variable: value}, env_file=None)
    assert info.value.variable == variable


def test_idempotency_window_and_where_keys_live() -> None:
    settings = load_settings({**EMBEDDED, "IDEMPOTENCY_WINDOW_SECONDS": "9"}, env_file=None)
    keys = build_node(settings).idempotency
    assert isinstance(keys, MemoryIdempotency) and keys.window == 9
    assert load_settings({}, env_file=None).idempotency_window == 300
    redis_keys = build_node(load_settings({}, env_file=None)).idempotency
    assert isinstance(redis_keys, RedisIdempotency)
