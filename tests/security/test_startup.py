"""What `realtime serve` says first: the seed-compatible openings, loudly; never a key."""

from __future__ import annotations

from pathlib import Path

from realtime.cli import security_warnings
from realtime.testing.gateway import make_settings, spawn_gateway

EMBEDDED = {"BROADCAST_MQ_TYPE": "memory", "PRESENCE_STORE": "memory"}


async def test_an_open_api_and_any_origin_are_warned_in_the_first_lines(tmp_path: Path) -> None:
    async with spawn_gateway(EMBEDDED, str(tmp_path / "gw.log")) as gw:
        first = gw.log().splitlines()[:3]
    assert "WARNING" in first[1] and "API_KEYS is not set" in first[1]
    assert "WARNING" in first[2] and "WS_ALLOWED_ORIGINS is *" in first[2]


async def test_a_closed_setup_starts_quietly_and_never_logs_its_keys(tmp_path: Path) -> None:
    key = "a-secret-api-key-1234567890"
    env = {
        **EMBEDDED,
        "API_KEYS": f"{key}:news",
        "CORS_ALLOWED_ORIGINS": "https://a.example",
        # Identity from tokens, so channels follow their grants (CHANNEL_POLICY=token).
        "JWT_SECRET": "s" * 32,
    }
    async with spawn_gateway(env, str(tmp_path / "gw.log")) as gw:
        log = gw.log()
    assert "WARNING" not in log
    assert key not in log


def test_warnings_follow_the_settings() -> None:
    warnings = security_warnings(make_settings())
    assert [w.split(" ")[0] for w in warnings] == ["API_KEYS", "WS_ALLOWED_ORIGINS"]
    closed = make_settings(API_KEYS="k" * 16, CORS_ALLOWED_ORIGINS="https://a.example")
    assert security_warnings(closed) == []
    assert security_warnings(make_settings(API_KEYS="k" * 16, WS_ALLOWED_ORIGINS="*"))
    seedlike = make_settings(
        API_KEYS="k" * 16, CORS_ALLOWED_ORIGINS="https://a.example", HTTP_REQUIRE_JSON="0"
    )
    assert [w.split(" ")[0] for w in security_warnings(seedlike)] == ["HTTP_REQUIRE_JSON=0:"]
