"""The direct write path: uvicorn's sans-I/O WebSocket protocol, made lean for many long-lived
connections. This is the only module that touches uvicorn's internals.

Reading, the handshake, pings and closing stay uvicorn's. What we change:

- the protocol puts itself into the ASGI scope (extension ``realtime.direct``) so the endpoint
  writes frames, framed once per broadcast, straight to the transport (:class:`DirectConnection`):
  no ASGI send, no task switch, no per-subscriber encode; and it tells the connection when a
  paused transport drains;
- writes are coalesced into passes (:class:`Flusher`), a channel's broadcasts joined once for
  all its subscribers (:class:`Group`, from ``engine.hub.Hub.fan_out``), and frames read count
  as arriving input (``realtime.activity``) that a pending pass waits for;
- the per-connection ``asyncio.Queue`` and ``asyncio.Event`` become small slotted stand-ins, and
  the handshake's request, response and scope are dropped once the connection is open: an idle
  connection is mostly these objects, and there are thousands of them;
- a slow consumer (4008) and a ping timeout (1011) abort the transport with a TCP reset, after
  writing the close frame: uvicorn's close waits for a write buffer that a client which stopped
  reading never drains, holding that buffer and the kernel's send queue for as long as the
  client lives.

That leans on attributes uvicorn does not promise, so :func:`missing_support` checks at start-up
that the installed uvicorn has them and :func:`choose_protocol` falls back to uvicorn's stock
protocol (the plain ASGI path) when it does not.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import time
from typing import Any, Protocol

import uvicorn
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState
from websockets.http11 import Request

from realtime.activity import ARRIVALS
from realtime.wire.frames import Outgoing

log = logging.getLogger("realtime.server.direct")

EXTENSION = "realtime.direct"
# uvicorn's ``ws`` option: our class, or uvicorn's own sans-I/O protocol, which serves the plain
# ASGI path and works on any uvicorn that has it.
DIRECT_PROTOCOL = "realtime.server.direct:DirectWebSocketProtocol"
STOCK_PROTOCOL = "websockets-sansio"

# Close code for a client that stopped reading, on both write paths; in docs/protocol.md.
CLOSE_SLOW_CONSUMER = 4008

# What this module reads or replaces on an instance (set in uvicorn's ``__init__``) and the
# methods it overrides or calls. pause_writing and resume_writing must be uvicorn's own:
# asyncio.BaseProtocol has no-op ones, and with those backpressure never engages.
INSTANCE_ATTRIBUTES = (
    "queue",
    "writable",
    "close_sent",
    "close_timeout",
    "close_timer",
    "read_paused",
    "conn",
    "transport",
    "loop",
)
METHODS = (
    "pause_writing",
    "resume_writing",
    "handle_connect",
    "receive",
    "send",
    "keepalive_timeout",
)
CONN_METHODS = ("send_close", "data_to_send")


class Drainable(Protocol):
    def flush(self) -> None: ...


class ReceiveQueue:
    """What uvicorn's protocol uses of its asyncio.Queue of ASGI receive events: put_nowait,
    get, empty."""

    __slots__ = ("_items", "_waiter")

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: Any) -> None:
        self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def empty(self) -> bool:
        return not self._items

    async def get(self) -> Any:
        while not self._items:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.pop(0)


class Flag:
    """What uvicorn's protocol uses of an asyncio.Event: set, clear, is_set, wait."""

    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = True
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> bool:
        while not self._set:
            waiter = asyncio.get_running_loop().create_future()
            if self._waiters is None:
                self._waiters = []
            self._waiters.append(waiter)
            await waiter
        return True


class DirectWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's ``ws`` protocol class when :func:`choose_protocol` picks the direct path."""

    peer: Drainable | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = ReceiveQueue()  # type: ignore[assignment]
        self.writable = Flag()  # type: ignore[assignment]

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        # The ASGI task is created above but runs only on the next loop iteration, so the
        # scope can still be given the extension here.
        scope: Any = getattr(self, "scope", None)
        if scope is not None and not self.close_sent:
            scope["extensions"][EXTENSION] = self

    def forget_handshake(self) -> None:
        """Called once the connection is accepted: nothing reads these again."""
        request: Request | None = getattr(self, "request", None)
        if request is not None:
            # websockets' parser generator keeps the request alive for the connection's
            # lifetime; emptying its headers frees most of what it holds.
            request.headers.clear()
        self.request = None  # type: ignore[assignment]
        self.response = None  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        # Frames read may publish: a pass about to be written waits for them (Flusher).
        ARRIVALS.count += 1
        super().data_received(data)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self.peer is not None:
            self.peer.flush()

    def fail_connection(self, code: int, reason: str, now: bool = False) -> None:
        """Write a close frame and end the app's receive loop; then reset the TCP connection,
        ``now`` (a slow consumer: its buffers full, it sees the reset, 1006, rather than the
        close frame queued behind them) or if the peer does not answer within the close
        timeout (a client that reads gets the code)."""
        if self.close_sent or self.transport.is_closing():
            return
        # uvicorn's own branch for an app's `websocket.close`, but without awaiting `writable`
        # (a slow consumer's transport stays paused) and resetting rather than closing.
        self.conn.send_close(code, reason)
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        if now:
            self.abort()
            return
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        self.close_timer = self.loop.call_later(self.close_timeout, self.abort)

    def keepalive_timeout(self) -> None:
        """uvicorn writes the 1011 close frame and closes gracefully, which waits for the write
        buffer to drain: a peer that stopped reading never drains it. Reset instead."""
        failing = not (self.close_sent or self.transport.is_closing())
        super().keepalive_timeout()
        if failing:
            self.abort()

    def abort(self) -> None:
        """Drop the connection now: asyncio's write buffer is freed by ``abort()``, the kernel's
        send queue by a zero linger (the socket closes with a reset, not a FIN that waits
        behind unread data)."""
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()


#: Loop iterations a pass may wait for more deliveries at most (see :class:`Flusher`).
MAX_DEFERRALS = 64
#: A broadcast to fewer subscribers than this is queued to each at once, not grouped.
GROUP_MIN = 8
#: Groups a pass holds at most; broadcasts beyond are queued to each subscriber at once.
MAX_GROUPS = 32


class Group:
    """Consecutive broadcasts to one set of subscribers (one channel's, unchanged), joined
    once and queued to each member when the pass is written: a broadcast costs one call,
    not one per subscriber. A member that is sent a frame of its own while the group is
    pending (an ack, a reply) first gets the group's frames so far, and is ``split``: later
    broadcasts of the group are queued to it directly, so every connection gets its frames
    in the order they were sent."""

    __slots__ = ("frames", "members", "split")

    def __init__(self, members: frozenset[DirectConnection], wire: bytes) -> None:
        self.members = members
        self.frames = [wire]
        self.split: set[DirectConnection] = set()


class Flusher:
    """Writes out every connection that queued frames, in one pass from a single callback: a
    broadcast to N subscribers schedules one callback, not N.

    A pass is one ``send()`` per subscriber whatever it carries, so the more broadcasts it
    carries the cheaper each is. When input arrived after its first frame was queued (frames
    read, HTTP requests, the next request of a pipelined HTTP connection, served in the next
    iteration), or while publishes are on their way to the broker (their broadcasts come back
    through it, and an HTTP connection's next pipelined request is read only once the broker
    answered), it waits one loop iteration for it, then more while either holds, but
    never longer than the last pass took to write (nor more than :data:`MAX_DEFERRALS`
    iterations): publishes that arrive while a pass runs go out together in the next one, and
    the loop still spends at least half its time writing. When nothing else comes in it does
    not wait: a lone broadcast goes out in the next iteration, as before coalescing.
    """

    __slots__ = (
        "_deferrals",
        "_dirty",
        "_last_pass",
        "_loop",
        "_scheduled",
        "_seen",
        "_since",
        "groups",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._dirty: list[DirectConnection] = []
        self.groups: list[Group] = []  # broadcasts of the pending pass, in order
        self._scheduled = False
        self._seen = 0
        self._deferrals = 0
        self._since = 0.0  # when the pending pass got its first frame
        self._last_pass = 0.0  # seconds the last pass took

    def add(self, connection: DirectConnection) -> None:
        self._dirty.append(connection)
        if not self._scheduled:
            self._schedule()

    def _schedule(self) -> None:
        self._scheduled = True
        self._seen = ARRIVALS.count
        self._deferrals = 0
        self._since = time.perf_counter()
        self._loop.call_soon(self._run)

    def fan_out(self, members: frozenset[DirectConnection], frame: Outgoing) -> None:
        """Queue a broadcast to ``members`` (``engine.hub.Batcher``): joins the pending
        group when it is the same set, else starts one (see :class:`Group`)."""
        groups = self.groups
        if groups:
            last = groups[-1]
            if last.members is members:
                wire = frame.wire
                last.frames.append(wire)
                for connection in last.split:
                    connection.put(wire, 1)
                return
        if len(members) < GROUP_MIN or len(groups) >= MAX_GROUPS:
            for connection in members:
                connection.send(frame)
            return
        groups.append(Group(members, frame.wire))
        if not self._scheduled:
            self._schedule()

    def split(self, connection: DirectConnection) -> None:
        """``connection`` is sent a frame of its own: first the pending groups' frames so
        far, in order."""
        for group in self.groups:
            if connection in group.members and connection not in group.split:
                group.split.add(connection)
                connection.put(b"".join(group.frames), len(group.frames))

    def _run(self) -> None:
        count = ARRIVALS.count
        if (
            (count != self._seen or ARRIVALS.publishing)
            and self._deferrals < MAX_DEFERRALS
            and (not self._deferrals or time.perf_counter() - self._since < self._last_pass)
        ):
            self._seen = count
            self._deferrals += 1
            self._loop.call_soon(self._run)
            return
        started = time.perf_counter()
        # Still scheduled while the groups are queued: put() adds to _dirty, not a new pass.
        groups, self.groups = self.groups, []
        try:
            for group in groups:
                wire = b"".join(group.frames)  # one frame: that frame itself, not a copy
                count = len(group.frames)
                split = group.split
                if len(groups) > 1 or split:
                    # Several groups: queued, so each member gets one write for all of them.
                    for connection in group.members:
                        if connection not in split:
                            connection.put(wire, count)
                    continue
                # One group (one channel's broadcasts, the usual pass): a member with nothing
                # queued whose transport takes writes gets it now. This loop is the pass's
                # cost besides the send() calls, so it stays inline. One that the write would
                # take past its byte bound goes through put(), which applies it.
                size = len(wire)
                for connection in group.members:
                    if (
                        connection._pending
                        or connection.slow
                        or not connection._writable._set
                        or connection._buffered + size > connection.max_bytes
                    ):
                        connection.put(wire, count)
                        continue
                    transport = connection._transport
                    if connection._protocol.close_sent or transport.is_closing():
                        continue
                    transport.write(wire)
                    connection._buffered = transport.get_write_buffer_size()
        finally:
            # Even if a write raised: a pass left scheduled would never run again.
            self._scheduled = False
        dirty, self._dirty = self._dirty, []
        for connection in dirty:
            connection.flush()
        self._last_pass = time.perf_counter() - started


class DirectConnection:
    """A peer on our own protocol class: frames go straight to the transport.

    Frames queued in one event-loop iteration are coalesced into one write. While the
    transport is paused (the client reads slower than we send) they wait here. The client is
    closed as a slow consumer (4008) when more than ``limit`` frames wait in a paused
    transport, or when the bytes waiting here and in the transport's write buffer would pass
    ``max_bytes`` (a single frame larger than that passes only when nothing waits).
    """

    __slots__ = (
        "_buffered",
        "_bytes",
        "_flusher",
        "_frames",
        "_pending",
        "_protocol",
        "_transport",
        "_writable",
        "limit",
        "max_bytes",
        "slow",
        "user_id",
    )

    def __init__(
        self,
        protocol: DirectWebSocketProtocol,
        flusher: Flusher,
        user_id: str,
        limit: int,
        max_bytes: int,
    ) -> None:
        self._protocol = protocol
        self._transport = protocol.transport
        self._writable: Flag = protocol.writable  # type: ignore[assignment]
        self._flusher = flusher
        self._pending: list[bytes] = []
        self._bytes = 0  # in _pending
        self._frames = 0  # in _pending (an item may hold several)
        # The transport's write buffer as of our last write or its resume_writing(): it only
        # shrinks between the two, by at most the high-water mark unseen, so it is read twice
        # per flush rather than once per frame.
        self._buffered = 0
        self.user_id = user_id
        self.limit = limit
        self.max_bytes = max_bytes
        self.slow = False
        protocol.peer = self

    @property
    def batcher(self) -> Flusher:
        """What the hub hands broadcasts to for all of its direct peers at once."""
        return self._flusher

    def send(self, frame: Outgoing) -> None:
        if self.slow:
            return
        if self._flusher.groups:
            # Broadcasts queued to this connection before this frame go out before it.
            self._flusher.split(self)
        self.put(frame.wire, 1)

    def put(self, wire: bytes, frames: int) -> None:
        """Queue ``wire``, holding ``frames`` frames."""
        if self.slow:
            return
        pending = self._pending
        size = self._bytes + len(wire)
        if size + self._buffered > self.max_bytes:
            # One frame larger than the bound still goes to a client with nothing waiting; a
            # group's write holding several frames does not (queued one by one, the frame that
            # passed the bound would have found the others waiting).
            if pending or frames > 1 or not self._writable._set:
                self._fail()
                return
        elif self._frames + frames > self.limit and not self._writable._set:
            # A burst of frames in one iteration to a client that reads is flushed at its end:
            # frames count only while the transport is paused, each frame of a group's write
            # too (one put of N frames is N frames waiting).
            self._fail()
            return
        pending.append(wire)
        self._bytes = size
        self._frames += frames
        if len(pending) == 1:
            self._flusher.add(self)

    def _fail(self) -> None:
        self.slow = True
        self._clear()
        self._protocol.fail_connection(CLOSE_SLOW_CONSUMER, "slow consumer", now=True)

    def _clear(self) -> None:
        self._pending.clear()
        self._bytes = 0
        self._frames = 0

    def flush(self) -> None:
        pending = self._pending
        if not pending or not self._writable._set:
            # Nothing to write, or a paused transport: its resume_writing() calls flush again.
            self._buffered = self._transport.get_write_buffer_size()
            return
        if self._protocol.close_sent or self._transport.is_closing():
            self._clear()
            return
        self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))
        self._clear()
        self._buffered = self._transport.get_write_buffer_size()

    def close(self, code: int, reason: str) -> None:
        """Close now with ``code``: an expired token, a flooding client; the read loop then
        ends."""
        self._clear()
        self._protocol.fail_connection(code, reason)

    def detach(self) -> None:
        self._protocol.peer = None
        self._clear()


class DirectPath:
    """Turns an accepted connection served by :class:`DirectWebSocketProtocol` into a
    :class:`DirectConnection`; one per endpoint, sharing one :class:`Flusher`."""

    def __init__(self) -> None:
        self._flusher: Flusher | None = None

    def connect(
        self, scope: Scope, user_id: str, limit: int, max_bytes: int
    ) -> DirectConnection | None:
        """The connection's direct peer, or None when another protocol serves it (then the
        scope is left as it is)."""
        extensions: dict[str, Any] = scope.get("extensions") or {}
        protocol = extensions.get(EXTENSION)
        if not isinstance(protocol, DirectWebSocketProtocol):
            return None
        # Nothing reads the handshake any more: let it go for the connection's lifetime.
        scope.clear()
        protocol.forget_handshake()
        if self._flusher is None:
            self._flusher = Flusher(protocol.loop)
        return DirectConnection(protocol, self._flusher, user_id, limit, max_bytes)


async def _no_app(scope: Scope, receive: Receive, send: Send) -> None:
    """The app of the offline protocol instance: never called."""


def offline_protocol(
    protocol_class: type[WebSocketsSansIOProtocol], loop: asyncio.AbstractEventLoop
) -> WebSocketsSansIOProtocol:
    """An instance of ``protocol_class`` built as uvicorn builds one, with no connection yet:
    its ``__init__`` is where uvicorn sets the attributes the direct path relies on."""
    config = uvicorn.Config(_no_app, lifespan="off", log_config=None, ws=STOCK_PROTOCOL)
    config.load()
    return protocol_class(config, ServerState(), {}, _loop=loop)


def missing_support(
    protocol_class: type[WebSocketsSansIOProtocol] | None = None,
) -> tuple[str, ...]:
    """What the direct path needs and ``protocol_class`` (by default the installed uvicorn's
    sans-I/O protocol, which ours subclasses) lacks; empty when the direct path can run."""
    if protocol_class is None:
        protocol_class = WebSocketsSansIOProtocol
    missing = [
        name
        for name in METHODS
        if getattr(protocol_class, name, None) in (None, getattr(asyncio.BaseProtocol, name, None))
    ]
    loop = asyncio.new_event_loop()
    try:
        instance = offline_protocol(protocol_class, loop)
    except Exception as exc:  # a constructor unlike the one we know: nothing can be checked
        return (*missing, f"__init__(config, server_state, app_state, _loop) ({exc!r})")
    finally:
        loop.close()
    missing += [name for name in INSTANCE_ATTRIBUTES if not hasattr(instance, name)]
    conn = getattr(instance, "conn", None)
    if conn is not None:
        missing += [
            f"conn.{name}" for name in CONN_METHODS if not callable(getattr(conn, name, None))
        ]
    return tuple(missing)


def choose_protocol(protocol_class: type[WebSocketsSansIOProtocol] | None = None) -> str:
    """uvicorn's ``ws`` option: the direct path when the installed uvicorn supports it, else
    uvicorn's stock sans-I/O protocol, with one warning line saying why."""
    if protocol_class is None:
        protocol_class = WebSocketsSansIOProtocol
    missing = missing_support(protocol_class)
    if not missing:
        return DIRECT_PROTOCOL
    log.warning(
        "uvicorn %s lacks %s in %s: WebSockets use the plain ASGI path (slower; upgrade uvicorn)",
        uvicorn.__version__,
        ", ".join(missing),
        protocol_class.__name__,
    )
    return STOCK_PROTOCOL
