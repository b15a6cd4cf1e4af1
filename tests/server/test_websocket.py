"""One real gateway (embedded mode) driven by real WebSocket clients."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from realtime.server.direct import GROUP_MIN
from realtime.testing.gateway import Client, Gateway, make_settings, run_gateway, ws_client
from realtime.testing.waiting import wait_until_async


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    async with run_gateway(make_settings()) as gw:
        yield gw


async def test_broadcast_reaches_subscribers_with_sender_and_time(gateway: Gateway) -> None:
    url = gateway.ws_url
    async with ws_client(url + "?user_id=alice") as alice, ws_client(url + "?user_id=bob") as bob:
        await alice.subscribe("room1", "broadcast")
        await bob.subscribe("room1", "broadcast")
        await bob.send(
            {"type": "broadcast", "channel": "room1", "event": "hi", "payload": {"text": "yo"}}
        )
        for client in (alice, bob):
            frame = await client.expect("broadcast", channel="room1", event="hi", user_id="bob")
            assert frame["payload"] == {"text": "yo"}
            assert isinstance(frame["ts"], int) and frame["ts"] > 1_600_000_000_000


async def test_event_defaults_to_message(gateway: Gateway) -> None:
    async with ws_client(gateway.ws_url + "?user_id=a") as a:
        await a.subscribe("c", "broadcast")
        await a.send({"type": "broadcast", "channel": "c", "payload": 1})
        await a.expect("broadcast", event="message", payload=1)


async def test_channels_are_isolated(gateway: Gateway) -> None:
    async with ws_client(gateway.ws_url + "?user_id=a") as a:
        await a.subscribe("one", "broadcast")
        await a.send({"type": "broadcast", "channel": "two", "event": "other", "payload": 2})
        await a.send({"type": "broadcast", "channel": "one", "event": "mine", "payload": 1})
        await a.expect("broadcast", channel="one", event="mine")


async def test_listen_filter(gateway: Gateway) -> None:
    url = gateway.ws_url
    async with (
        ws_client(url + "?user_id=b") as only_broadcast,
        ws_client(url + "?user_id=p") as only_presence,
        ws_client(url + "?user_id=x") as actor,
    ):
        await only_broadcast.subscribe("room", "broadcast")
        sync = await only_presence.subscribe("room", "presence")
        assert sync == {"type": "presence_sync", "channel": "room", "users": [], "version": 0}
        # Each client's next frame must be the kind it listens to, though the other came first.
        await actor.request({"type": "presence_join", "channel": "room", "payload": {}})
        await actor.request({"type": "broadcast", "channel": "room", "event": "e", "payload": 0})
        await only_broadcast.expect("broadcast", event="e")
        await actor.request({"type": "presence_leave", "channel": "room"})
        await only_presence.expect("presence_join", user_id="x")
        await only_presence.expect("presence_leave", user_id="x")


async def test_unsubscribe_stops_delivery(gateway: Gateway) -> None:
    async with ws_client(gateway.ws_url + "?user_id=a") as a:
        await a.subscribe("gone", "broadcast")
        await a.subscribe("kept", "broadcast")
        await a.request({"type": "unsubscribe", "channel": "gone"})
        await a.send({"type": "broadcast", "channel": "gone", "event": "no", "payload": 0})
        await a.send({"type": "broadcast", "channel": "kept", "event": "yes", "payload": 0})
        await a.expect("broadcast", channel="kept", event="yes")
    await wait_until_async(lambda: gateway.node.hub.channels("broadcast") == 0, timeout=5)


async def test_presence_join_update_leave_and_sync(gateway: Gateway) -> None:
    url = gateway.ws_url
    async with ws_client(url + "?user_id=watcher") as watcher:
        async with ws_client(url + "?user_id=alice") as alice:
            await watcher.subscribe("lobby", "presence")
            await alice.request(
                {"type": "presence_join", "channel": "lobby", "payload": {"name": "Alice"}}
            )
            join = await watcher.expect("presence_join", user_id="alice", meta={"name": "Alice"})
            assert join["updated_at"] > 0 and join["ts"] > 0
            await alice.send(
                {"type": "presence_update", "channel": "lobby", "payload": {"status": "typing"}}
            )
            await watcher.expect("presence_update", user_id="alice", meta={"status": "typing"})
            async with ws_client(url + "?user_id=late") as late:
                sync = await late.subscribe("lobby")
                assert sync is not None
                assert [(u["user_id"], u["meta"]) for u in sync["users"]] == [
                    ("alice", {"status": "typing"})
                ]
            await alice.send({"type": "presence_leave", "channel": "lobby"})
            await watcher.expect("presence_leave", user_id="alice")
            async with ws_client(url + "?user_id=late") as late:
                assert await late.subscribe("lobby") == {
                    "type": "presence_sync",
                    "channel": "lobby",
                    "users": [],
                    "version": 3,  # join, update, leave
                }


async def test_closing_a_connection_leaves_its_channels(gateway: Gateway) -> None:
    url = gateway.ws_url
    async with ws_client(url + "?user_id=w") as watcher:
        await watcher.subscribe("a", "presence")
        await watcher.subscribe("b", "presence")
        async with ws_client(url + "?user_id=ghost") as ghost:
            for ch in ("a", "b"):
                await ghost.request({"type": "presence_join", "channel": ch, "payload": {}})
                await watcher.expect("presence_join", channel=ch, user_id="ghost")
        leaves = {
            (await watcher.expect("presence_leave", user_id="ghost"))["channel"] for _ in "ab"
        }
        assert leaves == {"a", "b"}


async def test_second_connection_of_a_user_is_one_member(gateway: Gateway) -> None:
    url = gateway.ws_url
    async with ws_client(url + "?user_id=w") as watcher:
        await watcher.subscribe("tabs", "presence")
        async with ws_client(url + "?user_id=u") as tab1:
            await tab1.request({"type": "presence_join", "channel": "tabs", "payload": {"n": 1}})
            await watcher.expect("presence_join", user_id="u")
            async with ws_client(url + "?user_id=u") as tab2:
                await tab2.request(
                    {"type": "presence_join", "channel": "tabs", "payload": {"n": 2}}
                )
                await watcher.expect("presence_update", user_id="u", meta={"n": 2})
            # tab2 closed: u is still here through tab1, so the next event is tab1's own.
            await tab1.request({"type": "presence_update", "channel": "tabs", "payload": {"n": 3}})
            await watcher.expect("presence_update", user_id="u", meta={"n": 3})
        await watcher.expect("presence_leave", user_id="u")


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json at all", "invalid_json"),
        ('{"type":"shout","channel":"c"}', "unknown_type"),
        ('{"channel":"c"}', "unknown_type"),
        ('{"type":"broadcast","event":"e"}', "invalid_message"),
        ('{"type":"subscribe","channel":"c","listen":"broadcast"}', "invalid_message"),
        ('{"type":"presence_join","channel":"c","payload":"not an object"}', "invalid_message"),
        ("[]", "invalid_message"),
    ],
)
async def test_bad_frame_gets_error_and_connection_lives(
    gateway: Gateway, frame: str, code: str
) -> None:
    async with ws_client(gateway.ws_url + "?user_id=a") as a:
        await a.send(frame)
        error = await a.expect("error", code=code)
        assert error["message"]
        await a.subscribe("after", "broadcast")
        await a.send({"type": "broadcast", "channel": "after", "event": "ok", "payload": 1})
        await a.expect("broadcast", event="ok")


async def test_error_frame_names_channel_and_ref() -> None:
    async with run_gateway(make_settings()) as gw, ws_client(gw.ws_url + "?user_id=a") as a:
        await gw.node.brokers["broadcast"].close()
        await a.send({"type": "broadcast", "channel": "c", "payload": 1, "ref": "r1"})
        await a.expect("error", code="publish_failed", channel="c", ref="r1")


async def test_oversized_frame_closes_with_1009() -> None:
    async with run_gateway(make_settings(WS_MAX_FRAME_BYTES="1024")) as gw:
        async with ws_client(gw.ws_url + "?user_id=a") as a:
            await a.send({"type": "broadcast", "channel": "c", "payload": "x" * 2000})
            with pytest.raises(ConnectionClosed) as info:
                await a.recv()
            assert info.value.rcvd is not None and info.value.rcvd.code == 1009


@pytest.mark.parametrize(
    "server",
    [{}, {"ws": "websockets-sansio"}],
    ids=["direct-write-path", "plain-asgi-path"],
)
async def test_slow_consumer_is_closed_with_4008(
    server: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="realtime.server.websocket")
    settings = make_settings(WS_SEND_QUEUE_SIZE="8", WS_MAX_FRAME_BYTES="200000")
    async with (
        run_gateway(settings, **server) as gw,
        ws_client(gw.ws_url + "?user_id=slow", max_queue=1) as slow,
        ws_client(gw.ws_url + "?user_id=pub") as pub,
    ):
        await slow.subscribe("firehose", "broadcast")
        payload = "x" * 100_000
        frame = {"type": "broadcast", "channel": "firehose", "event": "e", "payload": payload}
        # The slow client reads nothing: TCP buffers fill, then its bounded queue overflows.
        for _ in range(400):
            await pub.send(frame)
            if gw.node.connections == 1:
                break
        await wait_until_async(lambda: gw.node.connections == 1, timeout=20)
        with pytest.raises(ConnectionClosed) as info:
            while True:
                await slow.recv()
        assert any("slow consumer" in r.getMessage() for r in caplog.records)
        if server:
            # The plain path closes through the ASGI server, which delivers the close frame
            # after what the client had not read.
            assert info.value.rcvd is not None
            assert (info.value.rcvd.code, info.value.rcvd.reason) == (4008, "slow consumer")
        else:
            # The direct path resets the connection at once (its 4008 frame was queued behind
            # what the client had not read, and is dropped with it): no close frame arrives.
            assert info.value.rcvd is None


async def _raw_handshake(url: str, rcvbuf: int | None = None) -> socket.socket:
    """A bare WebSocket connection whose control frames the test handles itself; ``rcvbuf``
    sets its receive buffer (before connecting, so the window is sized by it)."""
    host_port, path = url.removeprefix("ws://").split("/", 1)
    host, port = host_port.split(":")
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await loop.sock_connect(sock, (host, int(port)))
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET /{path} HTTP/1.1\r\nHost: {host_port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    await loop.sock_sendall(sock, request.encode())
    response = b""
    async with asyncio.timeout(5):
        while b"\r\n\r\n" not in response:
            response += await loop.sock_recv(sock, 1)
    assert response.startswith(b"HTTP/1.1 101")
    return sock


async def _read_frame(sock: socket.socket) -> tuple[int, bytes]:
    """One unmasked server frame (opcode, payload) from a bare socket; EOF fails the test."""
    loop = asyncio.get_running_loop()

    async def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = await loop.sock_recv(sock, n - len(data))
            assert chunk, "connection dropped without a close frame"
            data += chunk
        return data

    head = await exactly(2)
    length = head[1] & 0x7F
    if length == 126:
        length = int.from_bytes(await exactly(2), "big")
    elif length == 127:
        length = int.from_bytes(await exactly(8), "big")
    return head[0] & 0x0F, await exactly(length)


def _masked(opcode: int, payload: bytes) -> bytes:
    assert len(payload) < 126
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + body


async def test_peer_that_stops_answering_pings_is_closed_1011() -> None:
    settings = make_settings(WS_PING_INTERVAL_SECONDS="0.2", WS_PING_TIMEOUT_SECONDS="0.3")
    async with run_gateway(settings) as gw:
        sock = await _raw_handshake(gw.ws_url + "?user_id=mute")
        try:
            async with asyncio.timeout(10):
                opcode, payload = await _read_frame(sock)
                assert opcode == 0x9  # a ping, left unanswered
                while opcode != 0x8:
                    opcode, payload = await _read_frame(sock)
            assert int.from_bytes(payload[:2], "big") == 1011
        finally:
            sock.close()
        await wait_until_async(lambda: gw.node.connections == 0, timeout=5)


async def test_invalid_utf8_text_frame_closes_1007(gateway: Gateway) -> None:
    sock = await _raw_handshake(gateway.ws_url + "?user_id=bad")
    try:
        await asyncio.get_running_loop().sock_sendall(sock, _masked(0x1, b'{"x":"\xff\xfe"}'))
        async with asyncio.timeout(10):
            opcode, payload = await _read_frame(sock)
        assert opcode == 0x8
        assert int.from_bytes(payload[:2], "big") == 1007
    finally:
        sock.close()


async def test_peer_that_answers_pings_stays() -> None:
    settings = make_settings(WS_PING_INTERVAL_SECONDS="0.1", WS_PING_TIMEOUT_SECONDS="0.3")
    async with run_gateway(settings) as gw:
        sock = await _raw_handshake(gw.ws_url + "?user_id=polite")
        loop = asyncio.get_running_loop()
        pings = 0
        try:
            async with asyncio.timeout(10):
                # Answer ten pings, far more than one ping timeout's worth of time.
                while pings < 10:
                    opcode, payload = await _read_frame(sock)
                    assert opcode == 0x9, f"expected only pings, got opcode {opcode}"
                    pings += 1
                    await loop.sock_sendall(sock, _masked(0xA, payload))
            assert gw.node.connections == 1
        finally:
            sock.close()


async def test_grouped_broadcasts_keep_each_connections_order_and_stop_at_unsubscribe(
    gateway: Gateway,
) -> None:
    # Enough subscribers for the direct path to group the channel's broadcasts in a pass
    # (GROUP_MIN); all of them publish at once, with refs (their acks come between the
    # others' broadcasts), and one more leaves the channel in the middle of it.
    url, count = gateway.ws_url, 20
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(ws_client(f"{url}?user_id=u{i}"))
            for i in range(GROUP_MIN + 2)
        ]
        for client in clients:
            await client.subscribe("room", "broadcast")
        leaver, publishers = clients[0], clients[1:]

        async def publish(me: int, client: Client) -> list[tuple[str, Any]]:
            for n in range(count):
                frame = {"type": "broadcast", "channel": "room", "payload": [me, n], "ref": n}
                await client.send(frame)
            seen: list[tuple[str, Any]] = []
            while len(seen) < count * (len(publishers) + 1):
                frame = await client.recv()
                if frame["type"] == "ack":
                    seen.append(("ack", frame["ref"]))
                else:
                    seen.append(("broadcast", tuple(frame["payload"])))
            return seen

        publishing = asyncio.gather(*(publish(i, c) for i, c in enumerate(publishers)))
        # The leaver gets some of the stream, each sender's in order, then its ack and nothing
        # more of the channel.
        first = await leaver.expect("broadcast", channel="room")
        await leaver.send({"type": "unsubscribe", "channel": "room", "ref": "bye"})
        got = [tuple(first["payload"])]
        while (frame := await leaver.recv())["type"] != "ack":
            got.append(tuple(frame["payload"]))
        assert frame["ref"] == "bye"
        for me in range(len(publishers)):
            mine = [n for sender, n in got if sender == me]
            assert mine == list(range(len(mine)))
        for me, seen in enumerate(await asyncio.wait_for(publishing, 10)):
            # Every sender's broadcasts once and in its order; its own acks in order, each
            # before its own echo.
            broadcasts = [p for t, p in seen if t == "broadcast"]
            for sender in range(len(publishers)):
                assert [n for s, n in broadcasts if s == sender] == list(range(count))
            assert [r for t, r in seen if t == "ack"] == list(range(count))
            order = {frame: i for i, frame in enumerate(seen)}
            assert all(order["ack", n] < order["broadcast", (me, n)] for n in range(count))
        # Nothing of the channel after the ack: of one more broadcast there and a marker on
        # another channel sent after it, only the marker comes.
        await leaver.subscribe("marker", "broadcast")
        await publishers[0].send({"type": "broadcast", "channel": "room", "payload": "late"})
        await publishers[0].send({"type": "broadcast", "channel": "marker", "payload": "end"})
        await leaver.expect("broadcast", channel="marker", payload="end")
