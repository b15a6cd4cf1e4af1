"""Tokens never reach a log line: the real CLI's output at INFO, uvicorn's WebSocket lines
included, captured while tokens are accepted and refused."""

from __future__ import annotations

import time
from pathlib import Path

import jwt

from realtime.server.logs import redact
from realtime.testing.gateway import spawn_gateway, ws_client
from tests.security.helpers import refused

SECRET = "a-test-secret-that-is-long-enough-for-hs256-000"
EMBEDDED = {"BROADCAST_MQ_TYPE": "memory", "PRESENCE_STORE": "memory"}


def test_redact_keeps_the_rest_of_the_path() -> None:
    assert redact("/ws?user_id=a&token=x.y.z&b=1") == "/ws?user_id=a&token=[redacted]&b=1"
    assert redact("/ws?ACCESS_TOKEN=x.y.z") == "/ws?ACCESS_TOKEN=[redacted]"
    assert redact("/ws?mytoken=keep") == "/ws?mytoken=keep"


async def test_no_token_in_the_log(tmp_path: Path) -> None:
    claims = {"sub": "logged", "exp": int(time.time()) + 60, "channels": {"*": ["*"]}}
    good = jwt.encode(claims, SECRET, algorithm="HS256")
    bad = jwt.encode(claims, "another-secret-that-is-long-enough-000000", algorithm="HS256")
    env = {**EMBEDDED, "JWT_SECRET": SECRET, "LOG_LEVEL": "info"}
    async with spawn_gateway(env, str(tmp_path / "gateway.log")) as gateway:
        async with ws_client(gateway.ws_url + f"?token={good}") as client:
            await client.subscribe("room", "broadcast")
        async with ws_client(gateway.ws_url + f"?user_id=x&access_token={good}") as client:
            await client.subscribe("room", "broadcast")
        status, _error = await refused(gateway.ws_url, query=f"?token={bad}")
        assert status == 401
    log = gateway.log()
    # uvicorn's upgrade lines are there (so this test sees them), without the tokens.
    assert '"WebSocket /ws?token=[redacted]" [accepted]' in log
    assert '"WebSocket /ws?user_id=x&access_token=[redacted]" [accepted]' in log
    assert '"WebSocket /ws?token=[redacted]" 401' in log
    for token in (good, bad):
        for part in token.split("."):
            assert part not in log
    assert SECRET not in log
    # A refused upgrade is an INFO line, not uvicorn's "without completing handshake" ERROR
    # that any unauthenticated client could repeat to fill the error log.
    assert "connection rejected (401" in log
    assert "without completing handshake" not in log


async def test_start_up_says_what_is_open(tmp_path: Path) -> None:
    env = {**EMBEDDED, "JWT_SECRET": SECRET, "JWT_REQUIRE_EXP": "0", "CHANNEL_POLICY": "open"}
    async with spawn_gateway(env, str(tmp_path / "gateway.log")) as gateway:
        pass
    log = gateway.log()
    assert "WARNING realtime: JWT_REQUIRE_EXP=0" in log
    assert "WARNING realtime: CHANNEL_POLICY=open" in log
