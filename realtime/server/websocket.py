"""One WebSocket connection: identity, the read loop, the write path, the slow-consumer bound.

``/ws`` is served at the ASGI level, before Starlette's routing: a connection lives for hours,
and every coroutine frame and object it keeps costs memory on each of thousands of idle
sockets. Under our uvicorn protocol class frames go straight to the transport
(``realtime.server.direct``, the one module that knows uvicorn's internals); under any other
ASGI server a writer task drains a bounded queue (:class:`Connection`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
import typing
from collections import deque
from collections.abc import Coroutine
from typing import Any

from starlette.datastructures import Headers, QueryParams
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from realtime import metrics
from realtime.auth import Authenticator, Identity
from realtime.config import Settings
from realtime.engine.failures import PUBLISH_FAILED
from realtime.engine.node import Node
from realtime.errors import AuthError, FrameError
from realtime.history.base import Position
from realtime.server import logs
from realtime.server.direct import CLOSE_SLOW_CONSUMER, DirectConnection, DirectPath
from realtime.server.drain import CLOSE_RESTARTING, Drain
from realtime.server.expiry import Lease
from realtime.server.limits import CLOSE_RATE_LIMITED, ConnectionLimits, Quotas
from realtime.wire.frames import Outgoing
from realtime.wire.messages import (
    AnyClientMessage,
    PresenceLeave,
    Refresh,
    Unsubscribe,
    ack_frame,
    decode_client,
    error_frame,
    refusal,
)

log = logging.getLogger("realtime.server.websocket")
# One line per connection opened and closed: its own logger, so it can be silenced alone.
conn_log = logging.getLogger("realtime.connections")

SLOW_CLOSE_TIMEOUT = 5.0
# WS_MAX_CONNECTION_AGE_SECONDS varies by this fraction either way.
AGE_JITTER = 0.1
# Pipelined publishes one connection may have unanswered before its reads wait.
MAX_IN_FLIGHT = 256


class Connection:
    """A peer on any other ASGI server: a queue drained by its own writer task, bounded by
    ``limit`` frames and ``max_bytes`` bytes (the frame the writer is sending is the server's
    to hold, not counted here; a frame larger than ``max_bytes`` passes when nothing waits)."""

    __slots__ = (
        "_bytes",
        "_queue",
        "_send",
        "_wake",
        "closing",
        "limit",
        "max_bytes",
        "slow",
        "user_id",
        "writer",
    )

    def __init__(self, send: Send, user_id: str, limit: int, max_bytes: int) -> None:
        self._send = send
        self.user_id = user_id
        self.limit = limit
        self.max_bytes = max_bytes
        self.slow = False
        self.closing: tuple[int, str] | None = None  # the close frame the endpoint sends
        self._queue: deque[Outgoing] = deque()
        self._bytes = 0
        self._wake = asyncio.Event()
        self.writer: asyncio.Task[None] | None = None

    def send(self, frame: Outgoing) -> None:
        if self.slow:
            return
        size = self._bytes + len(frame.data)
        # One frame larger than the byte bound still goes to a client with nothing waiting.
        if len(self._queue) >= self.limit or (size > self.max_bytes and self._queue):
            # Never grow without bound: this client stopped reading. Its writer is most likely
            # blocked on the socket, so stop it here; the endpoint then closes with 4008.
            self.slow = True
            self.close(CLOSE_SLOW_CONSUMER, "slow consumer")
            return
        self._queue.append(frame)
        self._bytes = size
        self._wake.set()

    def close(self, code: int, reason: str) -> None:
        if self.closing is not None:
            return
        self.closing = (code, reason)
        self._queue.clear()
        self._bytes = 0
        if self.writer is not None:
            self.writer.cancel()

    async def write_loop(self) -> None:
        send, queue = self._send, self._queue
        while self.closing is None:
            if not queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            frame = queue.popleft()
            self._bytes -= len(frame.data)
            await send({"type": "websocket.send", "text": frame.text})


# Each client frame type's counter, looked up by class on the hot path. Built from the decoder's
# union, so a new message type gets its counter (labelled with its tag) with no edit here.
FRAME_COUNTERS = {
    cls: metrics.CLIENT_FRAMES.labels(cls.__struct_config__.tag)
    for cls in typing.get_args(AnyClientMessage)
}
REFUSED_FRAMES = metrics.FRAMES["refused"]

# What a connection whose token expired may still do while it has time to refresh.
AFTER_EXPIRY = (Refresh, Unsubscribe, PresenceLeave)


async def read_loop(
    receive: Receive,
    peer: DirectConnection | Connection,
    node: Node,
    lease: Lease | None = None,
    limits: ConnectionLimits | None = None,
    max_depth: int = 64,
) -> int | None:
    """Decode and act on each client message until the client goes; nothing a message does
    ends the loop, but flooding after being told does: then the peer is closed with
    CLOSE_RATE_LIMITED. Returns the close code the connection ended with, if known."""
    in_flight: deque[asyncio.Future[Position | None] | asyncio.Future[None]] = deque()
    while True:
        event = await receive()
        if event["type"] != "websocket.receive":
            code: int | None = event.get("code")
            return code
        data = event.get("text")
        if data is None:
            data = event.get("bytes") or b""
        try:
            if limits is not None:
                limits.admit_frame()
            message = decode_client(data, max_depth)
        except FrameError as exc:
            if limits is not None and limits.abusive:
                log.warning("closing a flooding connection", extra={"user_id": peer.user_id})
                metrics.RATE_LIMIT_CLOSES.inc()
                peer.close(CLOSE_RATE_LIMITED, "rate limited")
                return CLOSE_RATE_LIMITED
            REFUSED_FRAMES.inc()
            peer.send(refusal(exc))
            continue
        FRAME_COUNTERS[type(message)].inc()
        if isinstance(message, Refresh) or (
            lease is not None and lease.expired and not isinstance(message, AFTER_EXPIRY)
        ):
            await _lease_frame(peer, message, lease)
            continue
        try:
            if limits is not None:
                limits.admit(message, *node.holdings(peer))
            pending = await node.handle(peer, message)
        except FrameError as exc:
            peer.send(refusal(exc, message.ref))
        except Exception:
            log.exception("client message handling failed", extra={"user_id": peer.user_id})
            peer.send(error_frame("internal_error", "the gateway failed", None, message.ref))
        else:
            if limits is not None:
                limits.acted(message)
            if pending is None:
                if message.ref is not None:
                    peer.send(ack_frame(message.ref))
                continue
            # A pipelined publish: its ack or error comes when the MQ answers. The next message
            # is read meanwhile, with at most MAX_IN_FLIGHT of them unanswered.
            pending.add_done_callback(
                functools.partial(_settled, peer, message, time.perf_counter())
            )
            in_flight.append(pending)
            while in_flight and in_flight[0].done():
                in_flight.popleft()
            if len(in_flight) >= MAX_IN_FLIGHT:
                await asyncio.wait({in_flight[0]})


async def _lease_frame(
    peer: DirectConnection | Connection, message: AnyClientMessage, lease: Lease | None
) -> None:
    """A refresh, or another frame arriving after the token expired."""
    try:
        if not isinstance(message, Refresh):
            raise FrameError("token_expired", "your token expired: send a refresh frame")
        if lease is None:
            raise FrameError("invalid_token", "no JWT key is configured: nothing to refresh")
        await lease.refresh(message.token)
    except FrameError as exc:
        peer.send(refusal(exc, message.ref))
    except Exception:
        log.exception("refresh failed", extra={"user_id": peer.user_id})
        peer.send(error_frame("internal_error", "the gateway failed", None, message.ref))
    else:
        if message.ref is not None:
            peer.send(ack_frame(message.ref))


def _settled(
    peer: DirectConnection | Connection,
    message: AnyClientMessage,
    started: float,
    done: asyncio.Future[Position | None] | asyncio.Future[None],
) -> None:
    if done.cancelled():
        return
    error = done.exception()
    channel = getattr(message, "channel", None)
    if error is None:
        metrics.PUBLISH_LATENCY.observe(time.perf_counter() - started)
    else:
        metrics.PUBLISH_ERRORS["broadcast"].inc()
    if error is not None:
        # The detail (hosts, library text) is for the log, not the client.
        log.warning("pipelined publish failed on %r: %s", channel, error)
        peer.send(error_frame("publish_failed", PUBLISH_FAILED, channel, message.ref))
    elif message.ref is not None:
        # A broadcast stored in history: the ack says where.
        position = done.result()
        peer.send(ack_frame(message.ref, *(position or ())))


class WebSocketEndpoint:
    """The raw ASGI app behind ``/ws``: every check that can refuse a connection runs before
    the upgrade is accepted, so a refused client costs one HTTP answer."""

    def __init__(self, node: Node, settings: Settings, drain: Drain | None = None) -> None:
        self.node = node
        self.settings = settings
        self.drain = drain if drain is not None else Drain(settings.shutdown_drain_seconds)
        self.auth = Authenticator(settings)
        self._direct = DirectPath()
        self._origins = frozenset(settings.ws_allowed_origins)
        self._any_origin = "*" in self._origins
        self._per_user: dict[str, int] = {}
        self._quotas = Quotas(
            frames_per_second=settings.ws_max_frames_per_second,
            frame_burst=settings.ws_frame_burst,
            max_subscriptions=settings.ws_max_subscriptions,
            max_presence_joins=settings.ws_max_presence_joins,
            max_event_name=settings.event_name_max_length,
            resync_interval=settings.presence_resync_interval,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (await receive())["type"] != "websocket.connect":
            return
        headers = Headers(scope=scope)
        try:
            identity = await self.admit(headers, QueryParams(scope["query_string"]))
        except AuthError as exc:
            await self._deny(scope, receive, send, exc)
            return
        user_id = identity.user_id
        self._per_user[user_id] = self._per_user.get(user_id, 0) + 1
        # Read before the direct path empties the scope; the proxy-resolved address.
        client = _address(scope.get("client"))
        lease = None
        aging: asyncio.TimerHandle | None = None
        peer: DirectConnection | Connection | None = None
        code: int | None = None
        instance = number = "-"
        opened = time.monotonic()
        try:
            await send({"type": "websocket.accept"})
            limit, max_bytes = self.settings.ws_send_queue_size, self.settings.ws_send_queue_bytes
            peer = self._direct.connect(scope, user_id, limit, max_bytes)
            if peer is None:
                peer = Connection(send, user_id, limit, max_bytes)
            if self.auth.enabled:
                lease = Lease(peer, self.auth, self.node, self.settings.jwt_expiry_grace)
                lease.start(identity.expires)
            self.node.connect(peer, identity.grants)
            instance, _, number = self.node.conn_id(peer).rpartition(".")
            metrics.CONNECTIONS_OPENED.inc()
            metrics.CONNECTIONS.inc()
            # The fields again as attributes: LOG_FORMAT=json writes them as their own keys.
            fields = {"client": client, "user": user_id, "instance": instance, "conn": number}
            conn_log.info(
                "ws open %s user=%r instance=%s conn=%s",
                client,
                user_id,
                instance,
                number,
                extra={"event": "ws_open", **fields},
            )
            self.drain.add(peer)
            aging = self._age(peer)
            if isinstance(peer, DirectConnection):
                code = await self._serve_direct(peer, receive, lease)
            else:
                code = await self._serve_asgi(receive, send, peer, lease)
        finally:
            if aging is not None:
                aging.cancel()
            if peer is not None:
                self.drain.discard(peer)
                duration = time.monotonic() - opened
                if instance != "-":  # counted open: it was registered with the node
                    metrics.closed(code)
                conn_log.info(
                    "ws closed %s user=%r instance=%s conn=%s code=%s after %.1fs",
                    client,
                    user_id,
                    instance,
                    number,
                    "-" if code is None else code,
                    duration,
                    extra={
                        "event": "ws_closed",
                        "client": client,
                        "user": user_id,
                        "instance": instance,
                        "conn": number,
                        "code": code,
                        "duration": round(duration, 3),
                    },
                )
            if lease is not None:
                lease.cancel()
            left = self._per_user[user_id] - 1
            if left:
                self._per_user[user_id] = left
            else:
                del self._per_user[user_id]

    async def admit(self, headers: Headers, query: QueryParams) -> Identity:
        """Every check that can refuse an upgrade, in order; :class:`AuthError` says why.
        Also answers a plain GET or POST of /ws (``upgrade_check``): browsers hide a refused
        upgrade's status, so the browser client asks this way why its socket failed."""
        if self.drain.draining:
            raise AuthError("this instance is shutting down; try another", 503)
        self._check_origin(headers)
        identity = await self.auth.identify(headers, query)
        self._check_capacity(identity.user_id)
        return identity

    async def upgrade_check(self, request: Request) -> Response:
        """``GET`` or ``POST /ws`` without an upgrade: the status the upgrade would get (426
        when it would be accepted), with the same JSON ``error``. Nothing is opened or counted.
        The browser client POSTs: a browser sends ``Origin`` with a POST even to its own origin,
        so the origin check sees what the upgrade's saw. Readable from
        any origin: a page whose origin ``WS_ALLOWED_ORIGINS`` refuses must learn that it is
        refused (403) to stop retrying, and the answer holds nothing the upgrade's does not."""
        cors = {"access-control-allow-origin": "*"}
        try:
            await self.admit(request.headers, request.query_params)
        except AuthError as exc:
            return JSONResponse({"error": str(exc)}, status_code=exc.status, headers=cors)
        return JSONResponse(
            {"error": "this URL takes a WebSocket upgrade (it would be accepted)"},
            status_code=426,
            headers={"upgrade": "websocket", **cors},
        )

    def _age(self, peer: DirectConnection | Connection) -> asyncio.TimerHandle | None:
        """WS_MAX_CONNECTION_AGE_SECONDS: close with 1012 after the age, +-10% (as gRPC's
        MaxConnectionAge) so connections opened together do not all reconnect together."""
        age = self.settings.ws_max_connection_age
        if age is None:
            return None
        delay = age * random.uniform(1 - AGE_JITTER, 1 + AGE_JITTER)
        return asyncio.get_running_loop().call_later(
            delay, peer.close, CLOSE_RESTARTING, "maximum connection age"
        )

    def _check_origin(self, headers: Headers) -> None:
        # Browsers always send Origin; other clients (the seed's included) usually send none,
        # and cross-site WebSocket hijacking needs a browser, so a missing Origin passes. An
        # exact match only: "null" (sandboxed frames, file://) and look-alikes never do.
        origin = headers.get("origin")
        if origin is None or self._any_origin or origin in self._origins:
            return
        raise AuthError("origin not allowed", 403)

    def _check_capacity(self, user_id: str) -> None:
        cap = self.settings.ws_max_connections
        if cap and self.node.connections >= cap:
            raise AuthError("the gateway is at its connection limit; try another instance", 503)
        per_user = self.settings.ws_max_connections_per_user
        if per_user and self._per_user.get(user_id, 0) >= per_user:
            raise AuthError(f"this user already has {per_user} connections here", 429)

    def _reader(
        self, receive: Receive, peer: DirectConnection | Connection, lease: Lease | None
    ) -> Coroutine[Any, Any, int | None]:
        limits = ConnectionLimits(self._quotas)
        return read_loop(receive, peer, self.node, lease, limits, self.settings.json_max_depth)

    async def _deny(self, scope: Scope, receive: Receive, send: Send, exc: AuthError) -> None:
        if "websocket.http.response" in (scope.get("extensions") or {}):
            response = JSONResponse({"error": str(exc)}, status_code=exc.status)
            await response(scope, receive, send)
            logs.REFUSED.set(True)  # uvicorn's "without completing handshake" ERROR: ours
        else:  # the server cannot send an HTTP response to an upgrade: refuse it plainly
            await send({"type": "websocket.close", "code": 1008, "reason": str(exc)[:120]})

    async def _serve_direct(
        self, peer: DirectConnection, receive: Receive, lease: Lease | None
    ) -> int | None:
        # No writer task: sends go straight to the transport; this task is the reader.
        try:
            code = await self._reader(receive, peer, lease)
        finally:
            peer.detach()
            await self.node.disconnect(peer)
        if peer.slow:
            metrics.SLOW_CONSUMER_CLOSES.inc()
            log.warning("closed slow consumer", extra={"user_id": peer.user_id})
        return code

    async def _serve_asgi(
        self, receive: Receive, send: Send, peer: Connection, lease: Lease | None
    ) -> int | None:
        reader = asyncio.create_task(self._reader(receive, peer, lease))
        writer = peer.writer = asyncio.create_task(peer.write_loop())
        code = None
        try:
            await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
            if reader.done() and not reader.cancelled() and reader.exception() is None:
                code = reader.result()
        finally:
            for task in (reader, writer):
                task.cancel()
            for result in await asyncio.gather(reader, writer, return_exceptions=True):
                if isinstance(result, Exception) and not isinstance(result, OSError):
                    log.error("connection loop failed", exc_info=result)
            await self.node.disconnect(peer)
        if peer.closing is None:
            return code
        code, reason = peer.closing
        if peer.slow:
            metrics.SLOW_CONSUMER_CLOSES.inc()
            log.warning("closing slow consumer", extra={"user_id": peer.user_id})
        try:
            await asyncio.wait_for(
                send({"type": "websocket.close", "code": code, "reason": reason}),
                SLOW_CLOSE_TIMEOUT,
            )
        except Exception as exc:  # the client is gone or still not reading
            log.debug("close %d not sent: %s", code, exc)
        return code


def _address(client: Any) -> str:
    """``host:port`` of an ASGI scope's ``client`` (as TRUSTED_PROXIES resolved it)."""
    if not client:
        return "-"
    host, port = client[0], client[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
