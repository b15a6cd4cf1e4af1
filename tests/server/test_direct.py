"""The direct write path without sockets: our real protocol class, built as uvicorn builds it,
over a transport that records what it is asked to do; and the start-up check that decides
whether that class can run on the installed uvicorn."""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.datastructures import Headers
from websockets.http11 import Request
from websockets.protocol import State

from realtime.activity import ARRIVALS, arrived
from realtime.brokers.memory import MemoryBroker, MemoryBus
from realtime.cli import server_options
from realtime.engine.hub import Hub
from realtime.server.direct import (
    DIRECT_PROTOCOL,
    EXTENSION,
    GROUP_MIN,
    MAX_DEFERRALS,
    MAX_GROUPS,
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
from realtime.wire.messages import BROADCAST, PRESENCE


class RecordingTransport(asyncio.Transport):
    """Records writes and state changes; ``closing`` is what ``is_closing`` answers,
    ``buffered`` what ``get_write_buffer_size`` does, ``sock`` its socket (none by default)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closing = False
        self.aborted = False
        self.reading_resumed = False
        self.buffered = 0
        self.sock: socket.socket | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.sock if name == "socket" and self.sock is not None else default

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

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        limit: int = 8,
        max_bytes: int = 1 << 20,
        flusher: Flusher | None = None,
    ) -> None:
        protocol = offline_protocol(DirectWebSocketProtocol, loop)
        assert isinstance(protocol, DirectWebSocketProtocol)
        self.protocol = protocol
        self.transport = RecordingTransport()
        protocol.connection_made(self.transport)
        # As after a completed handshake: the sans-I/O connection can send a close frame.
        protocol.conn.state = State.OPEN
        protocol.handshake_complete = True
        self.peer = DirectConnection(protocol, flusher or Flusher(loop), "u1", limit, max_bytes)

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


async def test_over_the_limit_the_client_is_failed_with_4008_and_reset_at_once(
    wire: Wire,
) -> None:
    wire.protocol.pause_writing()
    for message in messages(wire.peer.limit):
        wire.peer.send(message)
    assert not wire.peer.slow
    wire.peer.send(Outgoing(b'{"one":"more"}'))
    assert wire.peer.slow
    assert [close_frame(data) for data in wire.transport.writes] == [(4008, "slow consumer")]
    assert wire.protocol.close_sent
    # Not after a close timeout: the buffers a client that stopped reading holds go now.
    assert wire.transport.aborted
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


async def test_other_closes_give_a_reading_client_the_close_timeout_to_get_the_code(
    wire: Wire,
) -> None:
    wire.protocol.close_timeout = 0.05
    wire.peer.close(4029, "rate limited")
    assert [close_frame(data) for data in wire.transport.writes] == [(4029, "rate limited")]
    assert not wire.transport.aborted  # not a slow consumer: its close frame can arrive
    await wait_until_async(lambda: wire.transport.aborted, timeout=2)


async def test_frames_count_only_while_the_transport_is_paused(wire: Wire) -> None:
    # A burst bigger than the frame bound, to a client that reads, goes out at the iteration's
    # end in one write.
    burst = messages(wire.peer.limit * 3)
    for message in burst:
        wire.peer.send(message)
    assert not wire.peer.slow
    await next_iteration()
    assert wire.transport.writes == [b"".join(m.wire for m in burst)]


async def test_past_the_byte_bound_the_client_is_failed_long_before_the_frame_bound() -> None:
    wire = Wire(asyncio.get_running_loop(), limit=1000, max_bytes=10_000)
    wire.protocol.pause_writing()
    big = Outgoing(b'"' + b"x" * 3_000 + b'"')
    for _ in range(3):
        wire.peer.send(big)
    assert not wire.peer.slow
    wire.peer.send(big)  # 4 x 3,006 bytes > 10,000: the fourth frame passes the bound
    assert wire.peer.slow
    assert [close_frame(data) for data in wire.transport.writes] == [(4008, "slow consumer")]
    assert wire.transport.aborted


async def test_one_frame_larger_than_the_byte_bound_goes_to_a_client_with_nothing_waiting() -> None:
    wire = Wire(asyncio.get_running_loop(), limit=1000, max_bytes=10_000)
    huge = Outgoing(b'"' + b"x" * 20_000 + b'"')
    wire.peer.send(huge)
    assert not wire.peer.slow
    wire.transport.buffered = 20_006  # the client reads none of it
    await next_iteration()
    assert wire.transport.writes == [huge.wire]
    # Still unread when the next one comes: now the client is behind by more than the bound.
    wire.protocol.pause_writing()
    wire.peer.send(Outgoing(b"{}"))
    assert wire.peer.slow


async def test_the_transports_write_buffer_counts_toward_the_byte_bound() -> None:
    wire = Wire(asyncio.get_running_loop(), limit=1000, max_bytes=10_000)
    wire.peer.send(Outgoing(b'"' + b"x" * 6_000 + b'"'))
    # The write goes to the transport; the client has read none of it, so it stays buffered.
    wire.transport.buffered = 6_006
    await next_iteration()
    assert len(wire.transport.writes) == 1
    wire.peer.send(Outgoing(b'"' + b"x" * 3_000 + b'"'))
    assert not wire.peer.slow
    wire.peer.send(Outgoing(b'"' + b"x" * 3_000 + b'"'))  # 6,006 + 2 x 3,006 > 10,000
    assert wire.peer.slow


async def test_a_drained_write_buffer_is_seen_when_the_transport_resumes() -> None:
    wire = Wire(asyncio.get_running_loop(), limit=1000, max_bytes=10_000)
    wire.peer.send(Outgoing(b'"' + b"x" * 6_000 + b'"'))
    wire.transport.buffered = 6_006
    await next_iteration()
    wire.protocol.pause_writing()
    wire.transport.buffered = 0  # the client read it all
    wire.protocol.resume_writing()
    for _ in range(3):
        wire.peer.send(Outgoing(b'"' + b"x" * 3_000 + b'"'))
    assert not wire.peer.slow


async def test_a_ping_timeout_resets_the_connection_at_once(wire: Wire) -> None:
    wire.transport.sock = sock = socket.socket()
    try:
        wire.protocol.keepalive_timeout()
        assert [close_frame(data) for data in wire.transport.writes] == [
            (1011, "keepalive ping timeout")
        ]
        # Reset with a zero linger, so the kernel drops its send queue too.
        assert wire.transport.aborted
        linger = sock.getsockopt(socket.SOL_SOCKET, socket.SO_LINGER, 8)
        assert struct.unpack("ii", linger) == (1, 0)
    finally:
        sock.close()


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
    peer = DirectPath().connect(scope, "alice", 4, 100_000)
    assert isinstance(peer, DirectConnection)
    assert (peer.user_id, peer.limit, peer.max_bytes) == ("alice", 4, 100_000)
    assert wire.protocol.peer is peer
    assert scope == {}
    assert not list(request.headers.raw_items())
    assert wire.protocol.request is None


def test_direct_path_leaves_other_protocols_alone() -> None:
    scope: dict[str, Any] = {"type": "websocket", "extensions": {"websocket.http.response": {}}}
    assert DirectPath().connect(scope, "alice", 4, 100_000) is None
    assert scope == {"type": "websocket", "extensions": {"websocket.http.response": {}}}


# The start-up check.


class WithoutCloseTimeout(WebSocketsSansIOProtocol):
    """As uvicorn before 0.52.1: no close timeout on the instance."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        del self.close_timeout


class WithoutKeepaliveTimeout(WebSocketsSansIOProtocol):
    """A uvicorn whose ping timeout is handled elsewhere: our reset would never run."""

    keepalive_timeout = None  # type: ignore[assignment]


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
        (WithoutKeepaliveTimeout, "keepalive_timeout"),
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


# --- coalescing: publishes that arrive while a pass is pending go out in that pass ----------


async def iterations(n: int) -> None:
    """Return after ``n`` more loop iterations (callbacks chained with call_soon)."""
    loop = asyncio.get_running_loop()
    done = loop.create_future()

    def step(left: int) -> None:
        if left:
            loop.call_soon(step, left - 1)
        else:
            done.set_result(None)

    loop.call_soon(step, n - 1)
    await done


async def test_a_frame_queued_in_the_next_iteration_joins_the_pending_pass(wire: Wire) -> None:
    # As a pipelined HTTP request: its answer is written and the next request announced
    # (arrived) in the same iteration as its publish; the next one is served in the next
    # iteration, and its broadcast goes out with the first one, in one write.
    first, second = messages(2)
    wire.peer.send(first)
    arrived()
    asyncio.get_running_loop().call_soon(wire.peer.send, second)
    await wait_until_async(lambda: wire.transport.writes, timeout=2)
    assert wire.transport.writes == [first.wire + second.wire]


async def test_without_input_a_frame_goes_out_in_the_next_iteration(wire: Wire) -> None:
    first, second = messages(2)
    wire.peer.send(first)
    asyncio.get_running_loop().call_soon(wire.peer.send, second)  # no input announced it
    await wait_until_async(lambda: len(wire.transport.writes) == 2, timeout=2)
    assert wire.transport.writes == [first.wire, second.wire]


async def test_a_lone_frame_is_not_held_while_nothing_arrives(wire: Wire) -> None:
    flusher = wire.peer._flusher
    flusher._last_pass = 10.0  # a pass that took long allows a long wait, but only for input
    wire.peer.send(messages(1)[0])
    await iterations(1)  # no input: no wait
    assert len(wire.transport.writes) == 1


async def test_while_input_keeps_arriving_a_pass_waits_at_most_max_deferrals() -> None:
    wire = Wire(asyncio.get_running_loop())
    wire.peer._flusher._last_pass = 10.0
    loop = asyncio.get_running_loop()
    stop = False

    def keep_arriving() -> None:
        arrived()
        if not stop:
            loop.call_soon(keep_arriving)

    keep_arriving()
    try:
        wire.peer.send(messages(1)[0])
        await iterations(MAX_DEFERRALS + 3)
        assert len(wire.transport.writes) == 1
    finally:
        stop = True


async def test_a_pass_waits_no_longer_than_the_last_pass_took() -> None:
    wire = Wire(asyncio.get_running_loop())
    wire.peer._flusher._last_pass = (
        0.0  # the last pass was instant: waiting for more is not worth it
    )
    loop = asyncio.get_running_loop()
    stop = False

    def keep_arriving() -> None:
        arrived()
        if not stop:
            loop.call_soon(keep_arriving)

    keep_arriving()
    try:
        wire.peer.send(messages(1)[0])
        await iterations(2)  # one iteration for the input, then the time bound ends the wait
        assert len(wire.transport.writes) == 1
    finally:
        stop = True


async def test_a_pass_measures_how_long_it_took(wire: Wire) -> None:
    flusher = wire.peer._flusher
    flusher._last_pass = -1.0
    wire.peer.send(messages(1)[0])
    await wait_until_async(lambda: wire.transport.writes, timeout=2)
    assert flusher._last_pass >= 0.0


async def test_frames_read_from_a_client_count_as_arriving_input(wire: Wire) -> None:
    before = ARRIVALS.count
    wire.protocol.data_received(b"")
    assert ARRIVALS.count == before + 1


async def test_a_pass_waits_while_publishes_are_on_their_way_to_the_broker(wire: Wire) -> None:
    # Their broadcasts come back through the broker: the pass waits for them, though no
    # input arrives meanwhile.
    wire.peer._flusher._last_pass = 10.0
    ARRIVALS.publishing += 1
    try:
        wire.peer.send(messages(1)[0])
        await iterations(5)
        assert wire.transport.writes == []
    finally:
        ARRIVALS.publishing -= 1
    await wait_until_async(lambda: wire.transport.writes, timeout=2)
    # None on its way and nothing arriving: the next lone frame is not held.
    wire.peer.send(messages(1)[0])
    await iterations(1)
    assert len(wire.transport.writes) == 2


async def test_a_publish_that_never_answers_holds_a_pass_at_most_max_deferrals(
    wire: Wire,
) -> None:
    wire.peer._flusher._last_pass = 10.0
    ARRIVALS.publishing += 1
    try:
        wire.peer.send(messages(1)[0])
        await iterations(MAX_DEFERRALS + 3)
        assert len(wire.transport.writes) == 1
    finally:
        ARRIVALS.publishing -= 1


# --- grouped fan-out: a channel's broadcasts in a pass are queued once per subscriber -------


Group = tuple[Flusher, list[Wire]]


def wires_on(flusher: Flusher, n: int, limit: int = 8) -> list[Wire]:
    loop = asyncio.get_running_loop()
    return [Wire(loop, limit=limit, flusher=flusher) for _ in range(n)]


@pytest.fixture
async def group() -> AsyncIterator[Group]:
    """Twice GROUP_MIN connections on one flusher, as a DirectPath's."""
    flusher = Flusher(asyncio.get_running_loop())
    wires = wires_on(flusher, 2 * GROUP_MIN)
    yield flusher, wires
    for wire in wires:
        wire.cancel_timers()


def members(wires: list[Wire]) -> frozenset[DirectConnection]:
    """A channel's subscribers as the hub hands them over: one set object per channel."""
    return frozenset(wire.peer for wire in wires)


def named(*names: str) -> list[Outgoing]:
    return [Outgoing(b'"%s"' % name.encode()) for name in names]


def joined(*out: Outgoing) -> bytes:
    return b"".join(message.wire for message in out)


def received(wire: Wire) -> bytes:
    return b"".join(wire.transport.writes)


async def written_out(flusher: Flusher) -> None:
    """Return once the pending pass has been written."""
    await wait_until_async(lambda: not flusher._scheduled and not flusher.groups, timeout=2)


async def test_a_channels_broadcasts_in_one_iteration_go_to_each_subscriber_in_one_write(
    group: Group,
) -> None:
    flusher, wires = group
    room = members(wires[:GROUP_MIN])
    out = messages(3)
    for message in out:
        flusher.fan_out(room, message)
    # Queued once for the channel, not once per subscriber.
    assert [g.frames for g in flusher.groups] == [[message.wire for message in out]]
    assert all(not wire.peer._pending for wire in wires)
    await written_out(flusher)
    for wire in wires[:GROUP_MIN]:
        assert wire.transport.writes == [joined(*out)]
    assert all(wire.transport.writes == [] for wire in wires[GROUP_MIN:])


async def test_a_member_sent_its_own_frames_between_broadcasts_gets_everything_in_order(
    group: Group,
) -> None:
    flusher, wires = group
    room = members(wires[:GROUP_MIN])
    me = wires[3]
    b0, b1, b2, b3, ack, reply = named("b0", "b1", "b2", "b3", "ack", "reply")
    flusher.fan_out(room, b0)
    flusher.fan_out(room, b1)
    me.peer.send(ack)
    flusher.fan_out(room, b2)  # me was split: queued to it directly, after its ack
    me.peer.send(reply)
    flusher.fan_out(room, b3)
    await written_out(flusher)
    assert me.transport.writes == [joined(b0, b1, ack, b2, reply, b3)]
    for wire in wires[:GROUP_MIN]:
        if wire is not me:
            assert wire.transport.writes == [joined(b0, b1, b2, b3)]


async def test_a_split_takes_the_frames_of_groups_that_are_no_longer_the_last(
    group: Group,
) -> None:
    # Two channels whose broadcasts interleave: each is a group of its own, in order.
    flusher, wires = group
    a, b = members(wires[:GROUP_MIN]), members(wires[4 : 4 + GROUP_MIN])
    both, a_only, b_only = wires[5], wires[0], wires[4 + GROUP_MIN - 1]
    a1, b1, a2, ack, b2, a3 = named("a1", "b1", "a2", "ack", "b2", "a3")
    flusher.fan_out(a, a1)
    flusher.fan_out(b, b1)
    flusher.fan_out(a, a2)
    both.peer.send(ack)
    flusher.fan_out(b, b2)
    flusher.fan_out(a, a3)
    assert len(flusher.groups) == 5
    await written_out(flusher)
    assert both.transport.writes == [joined(a1, b1, a2, ack, b2, a3)]
    assert a_only.transport.writes == [joined(a1, a2, a3)]
    assert b_only.transport.writes == [joined(b1, b2)]


async def test_a_small_set_is_sent_at_once_after_what_its_members_have_pending(
    group: Group,
) -> None:
    flusher, wires = group
    room = members(wires[:GROUP_MIN])
    small = members(wires[GROUP_MIN - 1 : 2 * GROUP_MIN - 1][: GROUP_MIN - 1])
    both, room_only, small_only = wires[GROUP_MIN - 1], wires[0], wires[GROUP_MIN]
    r1, s1, r2 = named("r1", "s1", "r2")
    flusher.fan_out(room, r1)
    flusher.fan_out(small, s1)
    assert len(flusher.groups) == 1  # the small set is not a group
    assert small_only.peer._pending == [s1.wire]
    flusher.fan_out(room, r2)
    await written_out(flusher)
    assert both.transport.writes == [joined(r1, s1, r2)]
    assert room_only.transport.writes == [joined(r1, r2)]
    assert small_only.transport.writes == [joined(s1)]


async def test_broadcasts_past_max_groups_are_sent_at_once_and_in_order(group: Group) -> None:
    flusher, wires = group
    subscribers = wires[:GROUP_MIN]
    # As many channels with the same subscribers, each its own set, interleaved.
    channels = [members(subscribers) for _ in range(MAX_GROUPS + 2)]
    out = messages(MAX_GROUPS + 4)
    for channel, message in zip(channels + channels[:2], out, strict=True):
        flusher.fan_out(channel, message)
    assert len(flusher.groups) == MAX_GROUPS
    await written_out(flusher)
    for wire in subscribers:
        assert received(wire) == joined(*out)


def paused_room(limit: int) -> tuple[Flusher, list[Wire], Wire, frozenset[DirectConnection]]:
    """GROUP_MIN subscribers of one channel allowed ``limit`` frames, the first one paused."""
    flusher = Flusher(asyncio.get_running_loop())
    wires = wires_on(flusher, GROUP_MIN, limit=limit)
    wires[0].protocol.pause_writing()
    return flusher, wires, wires[0], members(wires)


async def test_the_frame_limit_counts_every_frame_of_a_grouped_write() -> None:
    flusher, wires, paused, room = paused_room(limit=4)
    out = messages(5)  # one more than the limit, in one group
    for message in out:
        flusher.fan_out(room, message)
    assert len(flusher.groups) == 1
    await written_out(flusher)
    assert paused.peer.slow
    assert [close_frame(data) for data in paused.transport.writes] == [(4008, "slow consumer")]
    for wire in wires[1:]:
        assert wire.transport.writes == [joined(*out)]


async def test_a_grouped_write_of_limit_frames_leaves_no_room_for_one_more() -> None:
    flusher, _wires, paused, room = paused_room(limit=4)
    for message in messages(4):
        flusher.fan_out(room, message)
    await written_out(flusher)
    assert not paused.peer.slow
    paused.peer.send(Outgoing(b'{"one":"more"}'))
    assert paused.peer.slow


async def test_closed_slow_and_detached_members_of_a_pending_group_are_skipped(
    group: Group,
) -> None:
    flusher, wires = group
    closed, slow, gone = wires[0], wires[1], wires[2]
    slow.protocol.pause_writing()
    for message in messages(slow.peer.limit + 1):
        slow.peer.send(message)
    assert slow.peer.slow
    room = members(wires[:GROUP_MIN])
    b0, b1, b2 = named("b0", "b1", "b2")
    flusher.fan_out(room, b0)
    closed.peer.close(4029, "rate limited")
    gone.transport.closing = True  # the client went away; its reader ended
    gone.peer.detach()
    flusher.fan_out(room, b1)
    await written_out(flusher)
    assert [close_frame(data) for data in closed.transport.writes] == [(4029, "rate limited")]
    assert [close_frame(data) for data in slow.transport.writes] == [(4008, "slow consumer")]
    assert gone.transport.writes == []
    # Nothing held for them, though the slow one's transport never drains.
    assert (closed.peer._pending, slow.peer._pending, gone.peer._pending) == ([], [], [])
    for wire in wires[3:GROUP_MIN]:
        assert wire.transport.writes == [joined(b0, b1)]
    # The flusher lives on: the next pass goes out.
    flusher.fan_out(room, b2)
    await written_out(flusher)
    assert all(received(wire) == joined(b0, b1, b2) for wire in wires[3:GROUP_MIN])


async def test_the_hub_groups_a_channels_subscribers_as_of_each_broadcast(group: Group) -> None:
    # Through the hub, as the node delivers: who joins gets the next broadcast, who leaves
    # keeps what was delivered before it left (as before grouping) and nothing after.
    flusher, wires = group
    broker = MemoryBroker(MemoryBus())
    hub = Hub({BROADCAST: broker, PRESENCE: broker})
    staying, leaving, coming = wires[1:GROUP_MIN], wires[0], wires[GROUP_MIN]
    for wire in [leaving, *staying]:
        await hub.add(wire.peer, BROADCAST, "room")
    b0, b1, b2 = named("b0", "b1", "b2")
    hub.fan_out(BROADCAST, "room", b0)
    await hub.add(coming.peer, BROADCAST, "room")
    hub.fan_out(BROADCAST, "room", b1)
    await hub.remove(leaving.peer, BROADCAST, "room")
    hub.fan_out(BROADCAST, "room", b2)
    assert len(flusher.groups) == 3  # each change of the set starts a group
    await written_out(flusher)
    assert coming.transport.writes == [joined(b1, b2)]
    assert leaving.transport.writes == [joined(b0, b1)]
    assert all(wire.transport.writes == [joined(b0, b1, b2)] for wire in staying)


async def test_the_byte_bound_counts_a_grouped_write_as_the_frames_it_holds() -> None:
    # As when each broadcast was queued on its own: a burst past max_bytes in one iteration
    # fails the client, though it reads; only one frame larger than the bound may pass.
    flusher = Flusher(asyncio.get_running_loop())
    wires = wires_on(flusher, GROUP_MIN, limit=1000)
    for wire in wires:
        wire.peer.max_bytes = 10_000
    room = members(wires)
    big = Outgoing(b'"' + b"x" * 3_000 + b'"')
    for _ in range(4):  # 4 x 3,006 bytes > 10,000
        flusher.fan_out(room, big)
    await written_out(flusher)
    for wire in wires:
        assert wire.peer.slow
        assert [close_frame(data) for data in wire.transport.writes] == [(4008, "slow consumer")]


async def test_a_grouped_write_counts_what_the_transport_still_buffers() -> None:
    flusher = Flusher(asyncio.get_running_loop())
    wires = wires_on(flusher, GROUP_MIN, limit=1000)
    for wire in wires:
        wire.peer.max_bytes = 10_000
    behind = wires[0]
    behind.peer.send(Outgoing(b'"' + b"x" * 6_000 + b'"'))
    behind.transport.buffered = 6_006  # written, but the client has read none of it
    await written_out(flusher)
    room = members(wires)
    medium = Outgoing(b'"' + b"x" * 2_000 + b'"')
    for _ in range(2):  # 6,006 + 2 x 2,006 > 10,000; 2 x 2,006 alone is not
        flusher.fan_out(room, medium)
    await written_out(flusher)
    assert behind.peer.slow
    assert [w.transport.writes for w in wires[1:]] == [[joined(medium, medium)]] * (GROUP_MIN - 1)


async def test_a_frame_queued_before_a_channels_broadcasts_goes_out_before_them(
    group: Group,
) -> None:
    flusher, wires = group
    early = wires[2]
    reply, b0, b1 = named("reply", "b0", "b1")
    early.peer.send(reply)  # no group pending yet: not a split
    room = members(wires[:GROUP_MIN])
    flusher.fan_out(room, b0)
    flusher.fan_out(room, b1)
    await written_out(flusher)
    assert early.transport.writes == [joined(reply, b0, b1)]
    assert all(w.transport.writes == [joined(b0, b1)] for w in wires[:GROUP_MIN] if w is not early)


async def test_a_pass_that_raised_does_not_stop_later_passes(
    group: Group, monkeypatch: pytest.MonkeyPatch
) -> None:
    flusher, wires = group
    room = members(wires[:GROUP_MIN])
    loop = asyncio.get_running_loop()
    raised: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, context: raised.append(context))
    try:

        def broken(self: DirectConnection, wire: bytes, frames: int) -> None:
            raise RuntimeError("a write that failed")

        with monkeypatch.context() as patched:
            patched.setattr(DirectConnection, "put", broken)
            wires[0].peer._pending.append(b"x")  # the pass's put() path for this member
            flusher.fan_out(room, messages(1)[0])
            await wait_until_async(lambda: raised, timeout=2)
        wires[0].peer._pending.clear()
        later = named("later")[0]
        flusher.fan_out(room, later)
        await written_out(flusher)
        assert all(received(wire).endswith(later.wire) for wire in wires[1:GROUP_MIN])
    finally:
        loop.set_exception_handler(None)
