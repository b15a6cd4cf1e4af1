"""The direct write path without sockets: our real protocol class, built as uvicorn builds it,
over a transport that records what it is asked to do; and the start-up check that decides
whether that class can run on the installed uvicorn."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.datastructures import Headers
from websockets.http11 import Request
from websockets.protocol import State

from realtime.cli import server_options
from realtime.server.direct import (
    DIRECT_PROTOCOL,
    EXTENSION,
    STOCK_PROTOCOL,
    DirectConnection,
    DirectPath,
    DirectWebSocketProtocol,
    Flusher,
    choose_protocol,
    missing_support,
    offline_protocol,
)
from realtime.testing.gateway import make_settings
from realtime.testing.waiting import wait_until_async
from realtime.wire.frames import Outgoing


class RecordingTransport(asyncio.Transport):
    """Records writes and state changes; ``closing`` is what ``is_closing`` answers."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closing = False
        self.aborted = False
        self.reading_resumed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closing

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        self.reading_resumed = True

    def abort(self) -> None:
        self.aborted = True
        self.closing = True

    def close(self) -> None:
        self.closing = True


class Wire:
    """One open connection on our protocol class, its transport and its direct peer."""

    def __init__(self, loop: asyncio.AbstractEventLoop, limit: int = 8) -> None:
        protocol = offline_protocol(DirectWebSocketProtocol, loop)
        assert isinstance(protocol, DirectWebSocketProtocol)
        self.protocol = protocol
        self.transport = RecordingTransport()
        protocol.connection_made(self.transport)
        # As after a completed handshake: the sans-I/O connection can send a close frame.
        protocol.conn.state = State.OPEN
        protocol.handshake_complete = True
        self.peer = DirectConnection(protocol, Flusher(loop), "u1", limit)

    def cancel_timers(self) -> None:
        if self.protocol.close_timer is not None:
            self.protocol.close_timer.cancel()


@pytest.fixture
async def wire() -> AsyncIterator[Wire]:
    wire = Wire(asyncio.get_running_loop())
    yield wire
    wire.cancel_timers()


def messages(n: int) -> list[Outgoing]:
    return [Outgoing(b'{"n":%d}' % i) for i in range(n)]


async def next_iteration() -> None:
    """Return once every callback scheduled so far (the flusher's) has run."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    loop.call_soon(done.set_result, None)
    await done


def close_frame(data: bytes) -> tuple[int, str]:
    assert data[0] == 0x88, f"not a close frame: {data!r}"
    payload = data[2 : 2 + (data[1] & 0x7F)]
    return int.from_bytes(payload[:2], "big"), payload[2:].decode()


async def test_frames_queued_in_one_iteration_go_out_in_one_write(wire: Wire) -> None:
    out = messages(3)
    for message in out:
        wire.peer.send(message)
    assert wire.transport.writes == []
    await wait_until_async(lambda: wire.transport.writes, timeout=2)
    assert wire.transport.writes == [b"".join(m.wire for m in out)]


async def test_a_paused_transport_holds_frames_until_it_resumes(wire: Wire) -> None:
    wire.protocol.pause_writing()
    out = messages(2)
    for message in out:
        wire.peer.send(message)
    await next_iteration()
    assert wire.transport.writes == []
    wire.protocol.resume_writing()
    assert wire.transport.writes == [b"".join(m.wire for m in out)]


async def test_over_the_limit_the_client_is_failed_with_4008(wire: Wire) -> None:
    wire.protocol.pause_writing()
    wire.protocol.read_paused = True
    for message in messages(wire.peer.limit):
        wire.peer.send(message)
    assert not wire.peer.slow
    wire.protocol.close_timeout = 0.05
    wire.peer.send(Outgoing(b'{"one":"more"}'))
    assert wire.peer.slow
    assert [close_frame(data) for data in wire.transport.writes] == [(4008, "slow consumer")]
    assert wire.protocol.close_sent
    assert wire.transport.reading_resumed  # so the peer's close reply can still be read
    assert await asyncio.wait_for(wire.protocol.receive(), 2) == {
        "type": "websocket.disconnect",
        "code": 4008,
        "reason": "slow consumer",
    }
    # Nothing more goes out, even once the transport drains.
    for message in messages(3):
        wire.peer.send(message)
    wire.protocol.resume_writing()
    await next_iteration()
    assert len(wire.transport.writes) == 1
    # A peer that never reads the close frame is dropped after the close timeout.
    await wait_until_async(lambda: wire.transport.aborted, timeout=2)


async def test_a_closing_transport_drops_pending_frames(wire: Wire) -> None:
    for message in messages(2):
        wire.peer.send(message)
    wire.transport.closing = True
    await next_iteration()
    assert wire.transport.writes == []
    # Dropped, not held: were the transport writable again, they would not go out late.
    wire.transport.closing = False
    wire.protocol.resume_writing()
    assert wire.transport.writes == []


async def test_detach_drops_pending_frames_and_the_resume_hook(wire: Wire) -> None:
    for message in messages(2):
        wire.peer.send(message)
    wire.peer.detach()
    await next_iteration()
    assert wire.transport.writes == []
    assert wire.protocol.peer is None


async def test_direct_path_takes_a_connection_on_our_protocol_and_forgets_its_handshake(
    wire: Wire,
) -> None:
    request = Request("/ws", Headers({"Host": "example", "Cookie": "secret"}))
    wire.protocol.request = request
    scope: dict[str, Any] = {"type": "websocket", "extensions": {EXTENSION: wire.protocol}}
    peer = DirectPath().connect(scope, "alice", 4)
    assert isinstance(peer, DirectConnection)
    assert (peer.user_id, peer.limit) == ("alice", 4)
    assert wire.protocol.peer is peer
    assert scope == {}
    assert not list(request.headers.raw_items())
    assert wire.protocol.request is None


def test_direct_path_leaves_other_protocols_alone() -> None:
    scope: dict[str, Any] = {"type": "websocket", "extensions": {"websocket.http.response": {}}}
    assert DirectPath().connect(scope, "alice", 4) is None
    assert scope == {"type": "websocket", "extensions": {"websocket.http.response": {}}}


# The start-up check.


class WithoutCloseTimeout(WebSocketsSansIOProtocol):
    """As uvicorn before 0.52.1: no close timeout on the instance."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        del self.close_timeout


class WithoutPauseWriting(WebSocketsSansIOProtocol):
    """As uvicorn before 0.52.1: asyncio's no-op pause_writing, so backpressure never engages."""

    pause_writing = asyncio.BaseProtocol.pause_writing


class UnknownConstructor(WebSocketsSansIOProtocol):
    def __init__(self, config: uvicorn.Config) -> None:
        raise TypeError("not the constructor the check knows")


@pytest.fixture
def logged(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.WARNING, logger="realtime.server.direct")
    return caplog


def test_the_installed_uvicorn_runs_the_direct_path(
    logged: pytest.LogCaptureFixture,
) -> None:
    assert missing_support() == ()
    assert choose_protocol() == DIRECT_PROTOCOL
    assert server_options(make_settings())["ws"] == DIRECT_PROTOCOL
    assert logged.records == []


@pytest.mark.parametrize(
    ("stand_in", "missing"),
    [
        (WithoutCloseTimeout, "close_timeout"),
        (WithoutPauseWriting, "pause_writing"),
        (UnknownConstructor, "__init__"),
    ],
)
def test_a_uvicorn_without_what_the_direct_path_needs_gets_the_plain_path_and_one_warning(
    stand_in: type[WebSocketsSansIOProtocol],
    missing: str,
    logged: pytest.LogCaptureFixture,
) -> None:
    assert any(name.startswith(missing) for name in missing_support(stand_in))
    assert choose_protocol(stand_in) == STOCK_PROTOCOL
    assert len(logged.records) == 1
    line = logged.records[0].getMessage()
    assert f"uvicorn {uvicorn.__version__}" in line and missing in line


def test_server_options_fall_back_to_the_plain_path_on_a_uvicorn_without_it(
    monkeypatch: pytest.MonkeyPatch, logged: pytest.LogCaptureFixture
) -> None:
    # As if the installed uvicorn's sans-I/O protocol were one from before 0.52.1.
    monkeypatch.setattr("realtime.server.direct.WebSocketsSansIOProtocol", WithoutCloseTimeout)
    assert server_options(make_settings())["ws"] == STOCK_PROTOCOL
    assert [r.getMessage().split(" lacks ")[0] for r in logged.records] == [
        f"uvicorn {uvicorn.__version__}"
    ]
