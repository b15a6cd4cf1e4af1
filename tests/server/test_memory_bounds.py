"""What a client that never reads costs: a real gateway, bare sockets that stop reading after
their subscribe, and big broadcasts. The gateway must drop them within a bound, and on the
direct path with a TCP reset, which frees its write buffer and the kernel's send queue."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from typing import Any

import pytest

from realtime.server.websocket import Connection
from realtime.testing.gateway import Gateway, make_settings, run_gateway, ws_client
from realtime.testing.waiting import wait_until_async
from realtime.wire.frames import Outgoing
from tests.server.test_websocket import _masked, _raw_handshake, _read_frame

FRAME = 100_000  # bytes of payload per broadcast


async def never_reader(gw: Gateway, channel: str) -> socket.socket:
    """Subscribed (its ack read), then never reads again; a small receive buffer, so the
    gateway's side fills after a few frames."""
    sock = await _raw_handshake(gw.ws_url + "?user_id=mute", rcvbuf=16_384)
    subscribe = {"type": "subscribe", "channel": channel, "listen": ["broadcast"], "ref": "s"}
    await asyncio.get_running_loop().sock_sendall(
        sock, _masked(0x1, json.dumps(subscribe).encode())
    )
    async with asyncio.timeout(5):
        opcode, payload = await _read_frame(sock)
    assert opcode == 0x1 and json.loads(payload)["type"] == "ack"
    return sock


async def reset_by_gateway(sock: socket.socket, timeout: float) -> bool:
    """Read what the gateway sent until the connection ends: True for a reset (the gateway
    aborted), False for an orderly end of stream."""
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout):
        while True:
            try:
                if not await loop.sock_recv(sock, 1 << 20):
                    return False
            except ConnectionResetError:
                return True


async def publish_until_dropped(gw: Gateway, channel: str, most: int) -> int:
    """Broadcasts FRAME-byte payloads to ``channel`` until the gateway has dropped the never
    reader (only the publisher left); returns how many it took."""
    frame = {"type": "broadcast", "channel": channel, "event": "e", "payload": "x" * FRAME}
    async with ws_client(gw.ws_url + "?user_id=pub") as pub:
        for sent in range(1, most + 1):
            await pub.send(frame)
            # Acked once the broadcast before it has been handed to the hub.
            await pub.request({"type": "broadcast", "channel": "none", "payload": 0})
            if gw.node.connections == 1:
                return sent
    raise AssertionError(f"the never reader was still connected after {most} broadcasts")


@pytest.mark.parametrize(
    "server",
    [{}, {"ws": "websockets-sansio"}],
    ids=["direct-write-path", "plain-asgi-path"],
)
async def test_a_never_reader_is_closed_4008_at_the_byte_bound_well_before_the_frame_bound(
    server: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="realtime.server.websocket")
    # 1 MiB of bytes, 1,024 frames (the default): ten 100 KB frames pass the byte bound.
    settings = make_settings(
        WS_SEND_QUEUE_BYTES=str(1 << 20),
        WS_MAX_FRAME_BYTES=str(FRAME + 1000),
        WS_MAX_FRAMES_PER_SECOND="0",  # the publisher's pace is not what is tested
    )
    async with run_gateway(settings, **server) as gw:
        sock = await never_reader(gw, "firehose")
        try:
            # What the kernels hold (the gateway's send queue, the client's receive buffer)
            # comes before the bound: a few MB on loopback, tens of frames.
            sent = await publish_until_dropped(gw, "firehose", most=400)
            assert sent < 200 < settings.ws_send_queue_size
            assert [r.getMessage() for r in caplog.records if "slow consumer" in r.getMessage()]
            if not server:
                # Reset at once: nothing waits for a buffer this client will not drain.
                assert await reset_by_gateway(sock, timeout=5)
        finally:
            sock.close()


async def test_a_never_reader_is_gone_soon_after_its_ping_timeout() -> None:
    settings = make_settings(
        WS_PING_INTERVAL_SECONDS="0.5",
        WS_PING_TIMEOUT_SECONDS="0.5",
        WS_MAX_FRAME_BYTES=str(FRAME + 1000),
        WS_MAX_FRAMES_PER_SECOND="0",
    )
    async with run_gateway(settings) as gw:
        sock = await never_reader(gw, "firehose")
        try:
            frame = {"type": "broadcast", "channel": "firehose", "payload": "x" * FRAME}
            async with ws_client(gw.ws_url + "?user_id=pub") as pub:
                # 8 MB: more than the kernels hold, so some stays in the gateway's write buffer
                # (a graceful close would wait for it forever); under the 16 MiB byte bound.
                for _ in range(80):
                    await pub.send(frame)
                await pub.request({"type": "broadcast", "channel": "none", "payload": 0})
                assert gw.node.connections == 2
                # A ping goes out within 0.5 s, its timeout 0.5 s later: gone within 3 s.
                await wait_until_async(lambda: gw.node.connections == 1, timeout=3)
            assert await reset_by_gateway(sock, timeout=5)
        finally:
            sock.close()


def payload(size: int) -> Outgoing:
    return Outgoing(b'"' + b"x" * (size - 2) + b'"')


async def test_the_plain_path_queue_counts_bytes_and_forgets_what_was_sent() -> None:
    sent: list[str] = []
    drained = asyncio.Event()

    async def send(message: Any) -> None:
        sent.append(message["text"])
        if len(sent) == 3:
            drained.set()

    peer = Connection(send, "u", limit=100, max_bytes=10_000)
    for _ in range(3):
        peer.send(payload(3_000))
    assert not peer.slow
    peer.writer = asyncio.create_task(peer.write_loop())
    try:
        async with asyncio.timeout(2):
            await drained.wait()
        # What went out no longer counts (no await here, so the writer sends none of these).
        for _ in range(3):
            peer.send(payload(3_000))
        assert not peer.slow
        peer.send(payload(3_000))  # 12,000 > 10,000
        assert peer.slow
    finally:
        peer.writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await peer.writer


def test_one_frame_larger_than_the_byte_bound_passes_the_plain_path_when_nothing_waits() -> None:
    async def send(message: Any) -> None:
        raise AssertionError("no writer runs in this test")

    peer = Connection(send, "u", limit=100, max_bytes=10_000)
    peer.send(payload(20_000))
    assert not peer.slow
    peer.send(payload(10))
    assert peer.slow
