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
from collections import deque

from starlette.datastructures import Headers, QueryParams
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from realtime.auth import identify
from realtime.config import Settings
from realtime.engine.node import Node
from realtime.errors import AuthError, FrameError
from realtime.server.direct import CLOSE_SLOW_CONSUMER, DirectConnection, DirectPath
from realtime.wire.frames import Outgoing
from realtime.wire.messages import AnyClientMessage, ack_frame, decode_client, error_frame, refusal

log = logging.getLogger("realtime.server.websocket")

SLOW_CLOSE_TIMEOUT = 5.0
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
            self._queue.clear()
            self._bytes = 0
            if self.writer is not None:
                self.writer.cancel()
            return
        self._queue.append(frame)
        self._bytes = size
        self._wake.set()

    async def write_loop(self) -> None:
        send, queue = self._send, self._queue
        while not self.slow:
            if not queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            frame = queue.popleft()
            self._bytes -= len(frame.data)
            await send({"type": "websocket.send", "text": frame.text})


async def read_loop(receive: Receive, peer: DirectConnection | Connection, node: Node) -> None:
    """Decode and act on each client message until the client goes; nothing a message does
    ends the loop."""
    in_flight: deque[asyncio.Future[None]] = deque()
    while True:
        event = await receive()
        if event["type"] != "websocket.receive":
            return
        data = event.get("text")
        if data is None:
            data = event.get("bytes") or b""
        try:
            message = decode_client(data)
        except FrameError as exc:
            peer.send(refusal(exc))
            continue
        try:
            pending = await node.handle(peer, message)
        except FrameError as exc:
            peer.send(refusal(exc, message.ref))
        except Exception:
            log.exception("client message handling failed", extra={"user_id": peer.user_id})
            peer.send(error_frame("internal_error", "the gateway failed", None, message.ref))
        else:
            if pending is None:
                if message.ref is not None:
                    peer.send(ack_frame(message.ref))
                continue
            # A pipelined publish: its ack or error comes when the MQ answers. The next message
            # is read meanwhile, with at most MAX_IN_FLIGHT of them unanswered.
            pending.add_done_callback(functools.partial(_settled, peer, message))
            in_flight.append(pending)
            while in_flight and in_flight[0].done():
                in_flight.popleft()
            if len(in_flight) >= MAX_IN_FLIGHT:
                await asyncio.wait({in_flight[0]})


def _settled(
    peer: DirectConnection | Connection, message: AnyClientMessage, done: asyncio.Future[None]
) -> None:
    if done.cancelled():
        return
    error = done.exception()
    channel = getattr(message, "channel", None)
    if error is not None:
        peer.send(error_frame("publish_failed", str(error), channel, message.ref))
    elif message.ref is not None:
        peer.send(ack_frame(message.ref))


class WebSocketEndpoint:
    """The raw ASGI app behind ``/ws``."""

    def __init__(self, node: Node, settings: Settings) -> None:
        self.node = node
        self.settings = settings
        self._direct = DirectPath()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (await receive())["type"] != "websocket.connect":
            return
        try:
            user_id = identify(
                Headers(scope=scope),
                QueryParams(scope["query_string"]),
                self.settings.jwt_secret,
                self.settings.jwt_user_claim,
            )
        except AuthError as exc:
            await self._deny(scope, receive, send, exc)
            return
        await send({"type": "websocket.accept"})
        limit, max_bytes = self.settings.ws_send_queue_size, self.settings.ws_send_queue_bytes
        direct = self._direct.connect(scope, user_id, limit, max_bytes)
        if direct is not None:
            await self._serve_direct(direct, receive)
        else:
            await self._serve_asgi(receive, send, user_id, limit, max_bytes)

    async def _deny(self, scope: Scope, receive: Receive, send: Send, exc: AuthError) -> None:
        if "websocket.http.response" in (scope.get("extensions") or {}):
            response = JSONResponse({"error": str(exc)}, status_code=exc.status)
            await response(scope, receive, send)
        else:  # the server cannot send an HTTP response to an upgrade: refuse it plainly
            await send({"type": "websocket.close", "code": 1008, "reason": str(exc)[:120]})

    async def _serve_direct(self, peer: DirectConnection, receive: Receive) -> None:
        # No writer task: sends go straight to the transport; this task is the reader.
        self.node.connect(peer)
        try:
            await read_loop(receive, peer, self.node)
        finally:
            peer.detach()
            await self.node.disconnect(peer)
        if peer.slow:
            log.warning("closed slow consumer", extra={"user_id": peer.user_id})

    async def _serve_asgi(
        self, receive: Receive, send: Send, user_id: str, limit: int, max_bytes: int
    ) -> None:
        peer = Connection(send, user_id, limit, max_bytes)
        self.node.connect(peer)
        reader = asyncio.create_task(read_loop(receive, peer, self.node))
        writer = peer.writer = asyncio.create_task(peer.write_loop())
        try:
            await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (reader, writer):
                task.cancel()
            for result in await asyncio.gather(reader, writer, return_exceptions=True):
                if isinstance(result, Exception) and not isinstance(result, OSError):
                    log.error("connection loop failed", exc_info=result)
            await self.node.disconnect(peer)
        if peer.slow:
            log.warning("closing slow consumer", extra={"user_id": user_id})
            try:
                await asyncio.wait_for(
                    send(
                        {
                            "type": "websocket.close",
                            "code": CLOSE_SLOW_CONSUMER,
                            "reason": "slow consumer",
                        }
                    ),
                    SLOW_CLOSE_TIMEOUT,
                )
            except Exception as exc:  # the client is gone or still not reading
                log.debug("slow consumer close not sent: %s", exc)
