"""Attacks on /ws of a real gateway: origins, quotas, caps, nesting, names; each gets a clear
answer and the connection (or the gateway) lives on."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from realtime.testing.gateway import make_settings, run_gateway, ws_client


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("https://app.example", True),
        (None, True),
        ("null", False),
        ("https://app.example.evil.com", False),
        ("https://evilapp.example", False),
        ("http://app.example", False),
        ("https://APP.example:443", False),
    ],
)
async def test_origin_is_matched_exactly_before_the_upgrade(
    origin: str | None, allowed: bool
) -> None:
    settings = make_settings(WS_ALLOWED_ORIGINS="https://app.example")
    async with run_gateway(settings) as gw:
        headers = {"Origin": origin} if origin else {}
        if allowed:
            async with ws_client(gw.ws_url + "?user_id=a", additional_headers=headers) as a:
                await a.subscribe("c", "broadcast")
            return
        with pytest.raises(InvalidStatus) as refused:
            async with connect(gw.ws_url + "?user_id=a", origin=origin):  # type: ignore[arg-type]
                pass
        assert refused.value.response.status_code == 403


async def test_ws_origins_default_to_the_cors_list() -> None:
    settings = make_settings(CORS_ALLOWED_ORIGINS="https://app.example")
    assert settings.ws_allowed_origins == ("https://app.example",)
    async with run_gateway(settings) as gw:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(gw.ws_url + "?user_id=a", origin="https://evil.example"):  # type: ignore[arg-type]
                pass
        assert refused.value.response.status_code == 403


async def test_a_flood_gets_rate_limited_then_closed_4029_while_others_are_served() -> None:
    settings = make_settings(WS_MAX_FRAMES_PER_SECOND="20", WS_FRAME_BURST="20")
    async with run_gateway(settings) as gw:
        async with (
            ws_client(gw.ws_url + "?user_id=flood") as flood,
            ws_client(gw.ws_url + "?user_id=calm") as calm,
        ):
            frame = json.dumps({"type": "broadcast", "channel": "x", "payload": 1})
            codes = []
            with pytest.raises(ConnectionClosed) as closed:
                for _ in range(2000):  # bounded: closed long before
                    await flood.ws.send(frame)
                    while True:
                        try:
                            reply = await asyncio.wait_for(flood.ws.recv(), 0.001)
                        except TimeoutError:
                            break
                        codes.append(json.loads(reply)["code"])
            assert "rate_limited" in codes
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4029
            await calm.subscribe("c", "broadcast")


async def test_subscriptions_per_connection_are_capped() -> None:
    async with run_gateway(make_settings(WS_MAX_SUBSCRIPTIONS="3")) as gw:
        async with ws_client(gw.ws_url + "?user_id=a") as a:
            for n in range(3):
                await a.subscribe(f"c{n}", "broadcast")
            await a.send({"type": "subscribe", "channel": "c3", "listen": ["broadcast"], "ref": 9})
            await a.expect("error", code="too_many_subscriptions", ref=9, channel="c3")
            await a.subscribe("c0", "broadcast")  # re-subscribing one it has is fine
            await a.request({"type": "unsubscribe", "channel": "c1"})
            await a.subscribe("c3", "broadcast")
        assert gw.node.hub.channels("broadcast") <= 3


async def test_presence_joins_per_connection_are_capped() -> None:
    async with run_gateway(make_settings(WS_MAX_PRESENCE_JOINS="2")) as gw:
        async with ws_client(gw.ws_url + "?user_id=a") as a:
            for n in range(2):
                await a.request({"type": "presence_join", "channel": f"p{n}", "payload": {}})
            await a.send({"type": "presence_join", "channel": "p2", "payload": {}, "ref": 7})
            await a.expect("error", code="too_many_presence_joins", ref=7)
            await a.request({"type": "presence_update", "channel": "p1", "payload": {"x": 1}})


async def test_connections_per_user_are_capped_with_429() -> None:
    async with run_gateway(make_settings(WS_MAX_CONNECTIONS_PER_USER="2")) as gw:
        async with ws_client(gw.ws_url + "?user_id=u"), ws_client(gw.ws_url + "?user_id=u"):
            with pytest.raises(InvalidStatus) as refused:
                async with connect(gw.ws_url + "?user_id=u"):
                    pass
            assert refused.value.response.status_code == 429
            async with ws_client(gw.ws_url + "?user_id=other") as other:
                await other.subscribe("c", "broadcast")
        async with ws_client(gw.ws_url + "?user_id=u") as again:  # freed on close
            await again.subscribe("c", "broadcast")


async def test_connections_per_instance_are_capped_with_503() -> None:
    async with run_gateway(make_settings(WS_MAX_CONNECTIONS="2")) as gw:
        async with ws_client(gw.ws_url + "?user_id=a"), ws_client(gw.ws_url + "?user_id=b"):
            with pytest.raises(InvalidStatus) as refused:
                async with connect(gw.ws_url + "?user_id=c"):
                    pass
            assert refused.value.response.status_code == 503


async def test_deep_nesting_and_long_event_names_get_errors_and_the_connection_lives(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with run_gateway(make_settings()) as gw:
        async with ws_client(gw.ws_url + "?user_id=a") as a:
            await a.subscribe("c", "broadcast")
            deep = '{"type":"broadcast","channel":"c","payload":' + "[" * 1000 + "]" * 1000 + "}"
            await a.send(deep)
            refused = await a.expect("error", code="invalid_json")
            assert "deeper than 64" in refused["message"]
            await a.send({"type": "broadcast", "channel": "c", "event": "e" * 60_000, "ref": 3})
            await a.expect("error", code="invalid_message", ref=3)
            await a.request({"type": "broadcast", "channel": "c", "event": "ok", "payload": 1})
            await a.expect("broadcast", event="ok")
    assert "RecursionError" not in caplog.text


async def test_presence_resync_is_rate_limited_per_channel() -> None:
    async with run_gateway(make_settings(PRESENCE_RESYNC_INTERVAL_MS="60000")) as gw:
        async with ws_client(gw.ws_url + "?user_id=a") as a:
            await a.subscribe("room")
            await a.send({"type": "subscribe", "channel": "room", "ref": 5})
            await a.expect("error", code="rate_limited", ref=5, channel="room")
            await a.request({"type": "unsubscribe", "channel": "room"})
            await a.send({"type": "subscribe", "channel": "room", "ref": 6})
            await a.expect("error", code="rate_limited", ref=6)
            await a.subscribe("other")  # another channel is not affected
            await a.subscribe("room", "broadcast")  # without presence: no sync, no limit


async def test_json_max_depth_is_the_setting() -> None:
    async with run_gateway(make_settings(JSON_MAX_DEPTH="4")) as gw:
        async with ws_client(gw.ws_url + "?user_id=a") as a:
            await a.subscribe("c", "broadcast")
            # The frame's object plus 3 arrays: 4 levels, with more brackets than that.
            ok = {"type": "broadcast", "channel": "c", "event": "ok", "payload": [[[1]], [[2]]]}
            await a.request(ok)
            await a.expect("broadcast", event="ok")
            await a.send({**ok, "payload": [[[[1]]]], "ref": "deep"})
            await a.expect("error", code="invalid_json", ref=None)
