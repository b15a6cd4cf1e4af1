"""One WebSocket connection: identity, one reader and one writer, the slow-consumer bound.

When the reader or the writer ends, both end, and the node undoes the connection's presence
and subscriptions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque

from starlette.responses import JSONResponse
from starlette.websockets import WebSocket, WebSocketDisconnect

from realtime.auth import identify
from realtime.config import Settings
from realtime.errors import AuthError
from realtime.frames import Outgoing
from realtime.messages import FrameError, ack_frame, decode_client, error_frame
from realtime.node import Node
from realtime.wsproto import EXTENSION, DirectWebSocketProtocol

log = logging.getLogger("realtime.gateway")

# Close codes we send; documented in docs/protocol.md.
CLOSE_SLOW_CONSUMER = 4008
CLOSE_GOING_AWAY = 1001
SLOW_CLOSE_TIMEOUT = 5.0


class DirectConnection:
    """A peer on our own protocol class: frames go straight to the transport.

    Frames queued in one event-loop iteration are coalesced into one write. While the
    transport is paused (the client reads slower than we send) they wait here, at most
    ``limit`` of them; one more and the client is closed as a slow consumer.
    """

    __slots__ = ("_loop", "_pending", "_protocol", "_transport", "limit", "slow", "user_id")

    def __init__(self, protocol: DirectWebSocketProtocol, user_id: str, limit: int) -> None:
        self._protocol = protocol
        self._transport = protocol.transport
        self._loop = protocol.loop
        self._pending: list[bytes] = []
        self.user_id = user_id
        self.limit = limit
        self.slow = False
        protocol.peer = self

    def send(self, frame: Outgoing) -> None:
        pending = self._pending
        if self.slow:
            return
        if len(pending) >= self.limit:
            self.slow = True
            pending.clear()
            self._protocol.fail_connection(CLOSE_SLOW_CONSUMER, "slow consumer")
            return
        pending.append(frame.wire)
        if len(pending) == 1:
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        pending = self._pending
        if not pending or not self._protocol.writable.is_set():
            return  # resume_writing() calls flush again
        if self._protocol.close_sent or self._transport.is_closing():
            pending.clear()
            return
        self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))
        pending.clear()

    def detach(self) -> None:
        self._protocol.peer = None
        self._pending.clear()


class Connection:
    """A peer on any other ASGI server: a bounded queue drained by its own writer task."""

    __slots__ = ("_queue", "_wake", "_websocket", "limit", "slow", "user_id", "writer")

    def __init__(self, websocket: WebSocket, user_id: str, limit: int) -> None:
        self._websocket = websocket
        self.user_id = user_id
        self.limit = limit
        self.slow = False
        self._queue: deque[Outgoing] = deque()
        self._wake = asyncio.Event()
        self.writer: asyncio.Task[None] | None = None

    def send(self, frame: Outgoing) -> None:
        if self.slow:
            return
        if len(self._queue) >= self.limit:
            # Never grow without bound: this client stopped reading. Its writer is most likely
            # blocked on the socket, so stop it here; the handler then closes with 4008.
            self.slow = True
            self._queue.clear()
            if self.writer is not None:
                self.writer.cancel()
            return
        self._queue.append(frame)
        self._wake.set()

    async def write_loop(self) -> None:
        send = self._websocket.send
        queue = self._queue
        while not self.slow:
            if not queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            await send({"type": "websocket.send", "text": queue.popleft().text})


async def read_loop(websocket: WebSocket, peer: DirectConnection | Connection, node: Node) -> None:
    """Decode and act on each client frame until the client goes; nothing a frame does
    ends the loop."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        data = message.get("text")
        if data is None:
            data = message.get("bytes") or b""
        try:
            frame = decode_client(data)
        except FrameError as exc:
            peer.send(exc.frame())
            continue
        try:
            await node.handle(peer, frame)
        except FrameError as exc:
            peer.send(exc.frame(frame.ref))
        except Exception:
            log.exception("frame handling failed", extra={"user_id": peer.user_id})
            peer.send(error_frame("internal_error", "the gateway failed", None, frame.ref))
        else:
            if frame.ref is not None:
                peer.send(ack_frame(frame.ref))


async def serve_websocket(websocket: WebSocket, node: Node, settings: Settings) -> None:
    try:
        user_id = identify(
            websocket.headers, websocket.query_params, settings.jwt_secret, settings.jwt_user_claim
        )
    except AuthError as exc:
        await websocket.send_denial_response(
            JSONResponse({"error": str(exc)}, status_code=exc.status)
        )
        return
    await websocket.accept()
    protocol = websocket.scope.get("extensions", {}).get(EXTENSION)
    if isinstance(protocol, DirectWebSocketProtocol):
        await _serve_direct(websocket, protocol, user_id, node, settings)
    else:
        await _serve_asgi(websocket, user_id, node, settings)


async def _serve_direct(
    websocket: WebSocket,
    protocol: DirectWebSocketProtocol,
    user_id: str,
    node: Node,
    settings: Settings,
) -> None:
    # No writer task: sends go straight to the transport; this task is the reader.
    peer = DirectConnection(protocol, user_id, settings.ws_send_queue_size)
    node.connect(peer)
    try:
        await read_loop(websocket, peer, node)
    except (WebSocketDisconnect, OSError):
        pass
    finally:
        peer.detach()
        await node.disconnect(peer)
    if peer.slow:
        log.warning("closed slow consumer", extra={"user_id": user_id})


async def _serve_asgi(websocket: WebSocket, user_id: str, node: Node, settings: Settings) -> None:
    connection = Connection(websocket, user_id, settings.ws_send_queue_size)
    node.connect(connection)
    reader = asyncio.create_task(read_loop(websocket, connection, node))
    writer = connection.writer = asyncio.create_task(connection.write_loop())
    try:
        await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (reader, writer):
            task.cancel()
        for result in await asyncio.gather(reader, writer, return_exceptions=True):
            if isinstance(result, Exception) and not isinstance(
                result, WebSocketDisconnect | OSError
            ):
                log.error("connection loop failed", exc_info=result, extra={"user_id": user_id})
        await node.disconnect(connection)
    if connection.slow:
        log.warning("closing slow consumer", extra={"user_id": user_id})
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                websocket.close(CLOSE_SLOW_CONSUMER, "slow consumer"), SLOW_CLOSE_TIMEOUT
            )
