"""One size limit, enforced at the edges: what a broker is handed never exceeds
``MAX_MESSAGE_BYTES`` (the size docs/plugins.md promises brokers), and a larger HTTP body is
refused with 413 as soon as it is known to be too large, not after it was all read."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator

import httpx
import pytest

from realtime.brokers.base import EDGE_MAX_BYTES, MAX_MESSAGE_BYTES
from realtime.testing.gateway import Gateway, make_settings, run_gateway, ws_client
from realtime.testing.waiting import wait_until_async
from realtime.wire.messages import BROADCAST, Kind


class Handed:
    """Records the size of every message the gateway hands its broadcast broker."""

    def __init__(self, gateway: Gateway) -> None:
        self.sizes: list[int] = []
        broker = gateway.node.brokers[BROADCAST]
        publish = broker.publish

        async def recording(kind: Kind, channel: str, data: bytes) -> None:
            self.sizes.append(len(data))
            await publish(kind, channel, data)

        broker.publish = recording  # type: ignore[method-assign]


def body_of(size: int, channel: str = "c") -> bytes:
    """An /api/event body of exactly ``size`` bytes."""
    head = b'{"channel":"' + channel.encode() + b'","event":"e","payload":"'
    tail = b'"}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


@pytest.fixture
async def default_gateway() -> AsyncIterator[Gateway]:
    async with run_gateway(make_settings()) as gw:
        yield gw


async def post(gateway: Gateway, body: bytes) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.post(
            gateway.url + "/api/event", content=body, headers={"content-type": "application/json"}
        )


async def test_default_cap_just_under_reaches_the_broker_within_its_limit(
    default_gateway: Gateway,
) -> None:
    assert make_settings().http_max_body_bytes == EDGE_MAX_BYTES
    handed = Handed(default_gateway)
    body = body_of(EDGE_MAX_BYTES)
    async with ws_client(default_gateway.ws_url + "?user_id=a", max_size=None) as a:
        await a.subscribe("c", "broadcast")
        response = await post(default_gateway, body)
        assert response.status_code == 200, response.text
        frame = await a.expect("broadcast", channel="c")
        assert frame["payload"] == json.loads(body)["payload"]
    assert len(handed.sizes) == 1 and EDGE_MAX_BYTES < handed.sizes[0] <= MAX_MESSAGE_BYTES


async def test_default_cap_just_over_is_413_and_never_reaches_the_broker(
    default_gateway: Gateway,
) -> None:
    handed = Handed(default_gateway)
    response = await post(default_gateway, body_of(EDGE_MAX_BYTES + 1))
    assert response.status_code == 413
    assert "HTTP_MAX_BODY_BYTES" in response.json()["error"]
    assert handed.sizes == []


async def raw_request(gateway: Gateway, head: bytes, body: bytes) -> bytes:
    """Send ``head`` and ``body`` and read the status line, without finishing the body."""
    port = int(gateway.url.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head + body)
        await writer.drain()
        return await asyncio.wait_for(reader.readline(), 10)
    finally:
        writer.close()
        await writer.wait_closed()


async def test_declared_length_over_the_cap_is_refused_before_the_body() -> None:
    async with run_gateway(make_settings(HTTP_MAX_BODY_BYTES="1000")) as gw:
        # A gigabyte announced, not a byte sent: the answer must not wait for it.
        head = (
            b"POST /api/event HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"content-length: 1000000000\r\n\r\n"
        )
        status = await raw_request(gw, head, b"")
        assert status.startswith(b"HTTP/1.1 413"), status


async def test_chunked_body_over_the_cap_is_refused_while_it_streams() -> None:
    async with run_gateway(make_settings(HTTP_MAX_BODY_BYTES="1000")) as gw:
        handed = Handed(gw)
        head = (
            b"POST /api/event HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            b"transfer-encoding: chunked\r\n\r\n"
        )
        chunk = body_of(1500)
        # One chunk over the cap and no final chunk: the body never ends.
        status = await raw_request(gw, head, b"%x\r\n%s\r\n" % (len(chunk), chunk))
        assert status.startswith(b"HTTP/1.1 413"), status
        assert handed.sizes == []


async def test_a_small_cap_is_exact() -> None:
    async with run_gateway(make_settings(HTTP_MAX_BODY_BYTES="1000")) as gw:
        assert (await post(gw, body_of(1000))).status_code == 200
        response = await post(gw, body_of(1001))
        assert response.status_code == 413
        assert response.json() == {"error": "body is larger than 1000 bytes (HTTP_MAX_BODY_BYTES)"}


async def test_a_bus_message_over_the_limit_is_refused_and_the_connection_lives() -> None:
    # The widest frame settings allow, from a user id longer than the envelope's reserve:
    # only the node's own check stands between this message and the broker.
    settings = make_settings(WS_MAX_FRAME_BYTES=str(EDGE_MAX_BYTES))
    async with run_gateway(settings) as gw:
        handed = Handed(gw)
        user = "u" * 2000
        async with ws_client(gw.ws_url + "?user_id=" + user, max_size=None) as a:
            await a.subscribe("c", "broadcast")
            frame = {"type": "broadcast", "channel": "c", "event": "e", "payload": ""}
            frame["payload"] = "x" * (EDGE_MAX_BYTES - len(json.dumps(frame)))
            await a.send(json.dumps(frame))
            error = await a.expect("error", code="message_too_large", channel="c")
            assert str(MAX_MESSAGE_BYTES) in error["message"]
            await a.send({"type": "broadcast", "channel": "c", "event": "small", "payload": 1})
            await a.expect("broadcast", event="small")
        assert handed.sizes and max(handed.sizes) <= MAX_MESSAGE_BYTES


async def test_one_setting_takes_the_seeds_large_bodies_again() -> None:
    # The seed took any body; BROADCAST_MAX_MESSAGE_BYTES (for an MQ that carries more, as
    # Redis does) raises the broker's limit and, left unset, the HTTP cap follows it.
    limit = 4 * MAX_MESSAGE_BYTES
    settings = make_settings(BROADCAST_MAX_MESSAGE_BYTES=str(limit))
    assert settings.http_max_body_bytes == limit - 1024
    async with run_gateway(settings) as gw:
        handed = Handed(gw)
        async with ws_client(gw.ws_url + "?user_id=a", max_size=None) as a:
            await a.subscribe("big", "broadcast")
            response = await post(gw, body_of(2 * MAX_MESSAGE_BYTES, channel="big"))
            assert response.status_code == 200, response.text
            event = await a.expect("broadcast", channel="big")
            assert len(event["payload"]) > 2 * MAX_MESSAGE_BYTES - 100
        assert handed.sizes and max(handed.sizes) > MAX_MESSAGE_BYTES
        assert (await post(gw, body_of(limit))).status_code == 413


async def test_a_client_gone_before_its_body_arrived_is_no_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The soak's "Exception in ASGI application": a POST whose client closed the connection
    # before the handler read its body raised Starlette's ClientDisconnect out of the app.
    caplog.set_level(logging.INFO)
    async with run_gateway(make_settings()) as gw:
        handed = Handed(gw)
        port = int(gw.url.rsplit(":", 1)[1].rstrip("/"))
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /api/event HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\n"
            b'content-length: 100\r\n\r\n{"channel":"c"'
        )
        await writer.drain()
        writer.close()

        def handled() -> bool:
            return any(
                "closed before its body" in r.getMessage() or r.levelno >= logging.ERROR
                for r in caplog.records
            )

        await wait_until_async(handled, timeout=10, message="the cut request handled")
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert errors == []
        assert handed.sizes == []
        # The instance serves the next request as before.
        assert (await post(gw, body_of(100))).status_code == 200
