"""The presence settings: defaults, parsing, and errors that name the variable."""

from __future__ import annotations

import pytest

from realtime.config import OPTIONS, load_settings
from realtime.errors import ConfigError


def test_defaults() -> None:
    settings = load_settings({}, env_file=None)
    assert settings.presence_max_meta_bytes == 2048
    assert settings.presence_max_members == 100_000
    assert settings.presence_diff_window_ms == 100
    assert settings.presence_order_wait_ms == 100
    assert settings.presence_leave_grace == 0  # a closed connection leaves at once, as before
    names = {option.name for option in OPTIONS}
    assert {
        "PRESENCE_MAX_META_BYTES",
        "PRESENCE_MAX_MEMBERS",
        "PRESENCE_DIFF_WINDOW_MS",
        "PRESENCE_ORDER_WAIT_MS",
        "PRESENCE_LEAVE_GRACE_SECONDS",
    } <= names


def test_values_parse() -> None:
    settings = load_settings(
        {
            "PRESENCE_MAX_META_BYTES": "512",
            "PRESENCE_MAX_MEMBERS": "0",
            "PRESENCE_DIFF_WINDOW_MS": "25",
            "PRESENCE_ORDER_WAIT_MS": "0",
            "PRESENCE_LEAVE_GRACE_SECONDS": "2.5",
        },
        env_file=None,
    )
    assert settings.presence_max_meta_bytes == 512
    assert settings.presence_max_members == 0
    assert settings.presence_diff_window_ms == 25
    assert settings.presence_order_wait_ms == 0
    assert settings.presence_leave_grace == 2.5


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("PRESENCE_MAX_META_BYTES", "big"),
        ("PRESENCE_MAX_META_BYTES", "1"),
        ("PRESENCE_MAX_MEMBERS", "-1"),
        ("PRESENCE_DIFF_WINDOW_MS", "0.5"),
        ("PRESENCE_ORDER_WAIT_MS", "-1"),
        ("PRESENCE_ORDER_WAIT_MS", "1001"),
        ("PRESENCE_ORDER_WAIT_MS", "soon"),
        ("PRESENCE_LEAVE_GRACE_SECONDS", "-1"),
        ("PRESENCE_LEAVE_GRACE_SECONDS", "3601"),
        ("PRESENCE_LEAVE_GRACE_SECONDS", "nan"),
        ("PRESENCE_LEAVE_GRACE_SECONDS", "15s"),
    ],
)
def test_bad_value_names_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({name: value}, env_file=None)
    assert info.value.variable == name
    assert str(info.value).startswith(f"{name}: ")
