"""uvicorn's sans-I/O WebSocket protocol with a direct write path for fan-out.

Reading, the handshake, pings and closing stay uvicorn's. What we add: the protocol puts itself
into the ASGI scope (extension ``realtime.direct``) so the gateway can write frames that were
framed once per broadcast straight to the transport, without an ASGI send, a task switch or a
per-subscriber encode; and it tells the gateway when a paused transport drains again.
"""

from __future__ import annotations

from typing import Any, Protocol

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request

EXTENSION = "realtime.direct"


class Drainable(Protocol):
    def flush(self) -> None: ...


class DirectWebSocketProtocol(WebSocketsSansIOProtocol):
    """Set as uvicorn's ``ws`` protocol class by ``realtime serve``."""

    peer: Drainable | None = None

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        # The ASGI task is created above but runs only on the next loop iteration, so the
        # scope can still be given the extension here.
        scope: Any = getattr(self, "scope", None)
        if scope is not None and not self.close_sent:
            scope["extensions"][EXTENSION] = self

    def resume_writing(self) -> None:
        super().resume_writing()
        if self.peer is not None:
            self.peer.flush()

    def fail_connection(self, code: int, reason: str) -> None:
        """Send a close frame now, end the app's receive loop, and drop the TCP connection if
        the peer does not read it within the close timeout (a slow consumer may never)."""
        if self.close_sent or self.transport.is_closing():
            return
        self.conn.send_close(code, reason)
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        self.queue.put_nowait({"type": "websocket.disconnect", "code": code, "reason": reason})
        if self.read_paused:
            self.read_paused = False
            self.transport.resume_reading()
        self.close_timer = self.loop.call_later(self.close_timeout, self.transport.abort)
