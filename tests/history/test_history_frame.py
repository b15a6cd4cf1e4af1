"""The ``history`` client frame on a real embedded gateway: pages as GET /api/history gives
them, refusals that leave the connection working, and permissions as subscribe's."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest

from realtime.testing.gateway import Client, Gateway, make_settings, run_gateway, ws_client

SECRET = "a-test-secret-that-is-long-enough-for-hs256-000"


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    settings = make_settings(HISTORY_CHANNELS="hist.*", HISTORY_SIZE="5")
    async with run_gateway(settings) as gw:
        async with httpx.AsyncClient(base_url=gw.url) as http:
            for n in range(7):
                await http.post("/api/event", json={"channel": "hist.a", "payload": n})
        yield gw


async def page(client: Client, ref: int, **fields: Any) -> dict[str, Any]:
    await client.send({"type": "history", "ref": ref, **fields})
    frame = await client.expect("history", ref=ref)
    await client.expect("ack", ref=ref)
    return frame


async def test_pages_as_the_http_api_does(gateway: Gateway) -> None:
    async with ws_client(gateway.ws_url + "?user_id=a") as client:
        first = await page(client, 1, channel="hist.a", limit=2)
        # Size 5: offsets 3..7 are kept.
        assert (first["offset"], first["first"], first["next"]) == (7, 3, 4)
        assert [(p["offset"], p["payload"]) for p in first["publications"]] == [(3, 2), (4, 3)]
        assert first["channel"] == "hist.a" and first["epoch"]
        rest = await page(client, 2, channel="hist.a", since=first["next"])
        assert [p["offset"] for p in rest["publications"]] == [5, 6, 7]
        assert rest["next"] is None and rest["epoch"] == first["epoch"]
        async with httpx.AsyncClient(base_url=gateway.url) as http:
            same = await http.get("/api/history", params={"channel": "hist.a", "since": 4})
        assert same.json() == {k: v for k, v in rest.items() if k not in ("type", "ref")}


async def test_refusals_leave_the_connection_working(gateway: Gateway) -> None:
    async with ws_client(gateway.ws_url + "?user_id=a") as client:
        await client.send({"type": "history", "channel": "plain", "ref": 1})
        await client.expect("error", code="no_history", channel="plain", ref=1)
        await client.send({"type": "history", "channel": "hist.a", "since": -1, "ref": 2})
        # Not decoded, so no ref (as any malformed frame): the error names the field.
        assert "since" in (await client.expect("error", code="invalid_message"))["message"]
        await client.send({"type": "history", "channel": "__realtime__.x", "ref": 3})
        await client.expect("error", code="invalid_message", ref=3)
        assert (await page(client, 4, channel="hist.a"))["offset"] == 7


async def test_without_history_the_frame_is_refused() -> None:
    async with run_gateway(make_settings()) as gw, ws_client(gw.ws_url + "?user_id=a") as client:
        await client.send({"type": "history", "channel": "hist.a", "ref": 1})
        await client.expect("error", code="no_history", channel="hist.a", ref=1)


def token(channels: dict[str, list[str]]) -> str:
    claims = {"sub": "ann", "exp": int(time.time()) + 60, "channels": channels}
    return jwt.encode(claims, SECRET, algorithm="HS256")


async def test_reading_history_needs_the_right_to_subscribe() -> None:
    settings = make_settings(HISTORY_CHANNELS="hist.*", JWT_SECRET=SECRET)
    grants = {"hist.open": ["subscribe"], "hist.pub": ["publish"]}
    async with (
        run_gateway(settings) as gw,
        ws_client(gw.ws_url + f"?token={token(grants)}") as client,
    ):
        await client.send({"type": "history", "channel": "hist.pub", "ref": 1})
        await client.expect("error", code="forbidden", channel="hist.pub", ref=1)
        assert (await page(client, 2, channel="hist.open"))["publications"] == []
