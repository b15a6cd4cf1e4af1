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
from realtime.messages import FrameError, ack_frame, decode_client, error_frame
from realtime.node import Node

log = logging.getLogger("realtime.gateway")

# Close codes we send; documented in docs/protocol.md.
CLOSE_SLOW_CONSUMER = 4008
CLOSE_GOING_AWAY = 1001
SLOW_CLOSE_TIMEOUT = 5.0


class Connection:
    """A peer: a bounded queue of encoded frames drained by its own writer."""

    __slots__ = ("_queue", "_wake", "_websocket", "limit", "slow", "user_id", "writer")

    def __init__(self, websocket: WebSocket, user_id: str, limit: int) -> None:
        self._websocket = websocket
        self.user_id = user_id
        self.limit = limit
        self.slow = False
        self._queue: deque[str] = deque()
        self._wake = asyncio.Event()
        self.writer: asyncio.Task[None] | None = None

    def send(self, frame: str) -> None:
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
            await send({"type": "websocket.send", "text": queue.popleft()})

    async def read_loop(self, node: Node) -> None:
        while True:
            message = await self._websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("text")
            if data is None:
                data = message.get("bytes") or b""
            try:
                frame = decode_client(data)
            except FrameError as exc:
                self.send(exc.frame())
                continue
            try:
                await node.handle(self, frame)
            except FrameError as exc:
                self.send(exc.frame(frame.ref))
            except Exception:
                # The loop survives whatever one frame does; the client hears about it.
                log.exception("frame handling failed", extra={"user_id": self.user_id})
                self.send(error_frame("internal_error", "the gateway failed", None, frame.ref))
            else:
                if frame.ref is not None:
                    self.send(ack_frame(frame.ref))


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
    connection = Connection(websocket, user_id, settings.ws_send_queue_size)
    node.connect(connection)
    reader = asyncio.create_task(connection.read_loop(node))
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
