"""A live connection's token runs out: token_expired, refused actions, close 4001 after the
grace period; a refresh frame extends it. On both write paths (direct and plain ASGI)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest
from websockets.exceptions import ConnectionClosed

from realtime.testing.gateway import Gateway, make_settings, run_gateway, ws_client
from realtime.testing.waiting import wait_until_async

SECRET = "a-test-secret-that-is-long-enough-for-hs256-000"
GRACE = 1.0


def token(sub: str = "u", ttl: float = 60, channels: Any = None) -> str:
    claims = {"sub": sub, "exp": int(time.time() + ttl), "channels": channels or {"*": ["*"]}}
    return jwt.encode(claims, SECRET, algorithm="HS256")


def exp_of(t: str) -> float:
    return float(jwt.decode(t, options={"verify_signature": False})["exp"])


@pytest.fixture(params=["direct", "asgi"])
async def gateway(request: pytest.FixtureRequest) -> AsyncIterator[Gateway]:
    settings = make_settings(JWT_SECRET=SECRET, JWT_EXPIRY_GRACE_SECONDS=str(GRACE))
    options = {"ws": "websockets-sansio"} if request.param == "asgi" else {}
    async with run_gateway(settings, **options) as gw:
        yield gw


async def test_expired_token_gets_token_expired_then_close_4001(gateway: Gateway) -> None:
    async with ws_client(gateway.ws_url + f"?token={token(ttl=1.5)}") as client:
        await client.subscribe("room", "broadcast")
        await client.expect("error", code="token_expired", timeout=5)
        await client.send({"type": "broadcast", "channel": "room", "event": "late", "ref": 1})
        await client.expect("error", code="token_expired", ref=1)
        with pytest.raises(ConnectionClosed) as info:
            await client.recv(timeout=GRACE + 5)
        assert info.value.rcvd is not None and info.value.rcvd.code == 4001
    await wait_until_async(lambda: gateway.node.connections == 0, timeout=5)


async def test_refresh_before_expiry_keeps_the_connection(gateway: Gateway) -> None:
    first = token(ttl=1.5)
    async with ws_client(gateway.ws_url + f"?token={first}") as client:
        await client.subscribe("room", "broadcast")
        await client.request({"type": "refresh", "token": token(ttl=60)})
        await wait_until_async(lambda: time.time() > exp_of(first) + GRACE + 0.3, timeout=10)
        # No token_expired came and the connection is open: the next frame is this ack.
        await client.request({"type": "broadcast", "channel": "room", "event": "on"})
        await client.expect("broadcast", event="on")


async def test_refresh_within_the_grace_period(gateway: Gateway) -> None:
    async with ws_client(gateway.ws_url + f"?token={token(ttl=1.5)}") as client:
        await client.subscribe("room", "broadcast")
        await client.expect("error", code="token_expired", timeout=5)
        await client.request({"type": "refresh", "token": token(ttl=60)})
        expired_at = time.time()
        await wait_until_async(lambda: time.time() > expired_at + GRACE + 0.3, timeout=10)
        await client.request({"type": "broadcast", "channel": "room", "event": "back"})
        await client.expect("broadcast", event="back")


async def test_bad_refreshes_change_nothing(gateway: Gateway) -> None:
    async with ws_client(gateway.ws_url + f"?token={token(channels={'a': ['*']})}") as client:
        bad = [
            token(sub="mallory"),
            token(ttl=-5),
            jwt.encode({"sub": "u", "exp": int(time.time()) + 60}, "x" * 40, algorithm="HS256"),
        ]
        for ref, t in enumerate(bad, 1):
            await client.send({"type": "refresh", "token": t, "ref": ref})
            error = await client.expect("error", code="invalid_token", ref=ref)
            assert t not in error["message"]
        await client.send({"type": "subscribe", "channel": "b", "ref": 10})
        await client.expect("error", code="forbidden", ref=10)
        # A good refresh brings the new token's grants.
        await client.request({"type": "refresh", "token": token(channels={"b": ["*"]})})
        await client.subscribe("b", "broadcast")


async def test_refresh_without_a_jwt_key() -> None:
    async with run_gateway(make_settings()) as gw, ws_client(gw.ws_url + "?user_id=d") as c:
        await c.send({"type": "refresh", "token": token(), "ref": 1})
        await c.expect("error", code="invalid_token", ref=1)
