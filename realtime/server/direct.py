"""uvicorn's sans-I/O WebSocket protocol, made lean for many long-lived connections.

Reading, the handshake, pings and closing stay uvicorn's. What we change:

- the protocol puts itself into the ASGI scope (extension ``realtime.direct``) so the gateway
  writes frames, framed once per broadcast, straight to the transport: no ASGI send, no task
  switch, no per-subscriber encode; and it tells the gateway when a paused transport drains;
- the per-connection ``asyncio.Queue`` and ``asyncio.Event`` become small slotted stand-ins, and
  the handshake's request and response are dropped once the connection is open: an idle
  connection is mostly these objects, and there are thousands of them.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request

EXTENSION = "realtime.direct"


class Drainable(Protocol):
    def flush(self) -> None: ...


class Inbox:
    """What uvicorn's protocol uses of an asyncio.Queue: put_nowait, get, empty."""

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
    """Set as uvicorn's ``ws`` protocol class by ``realtime serve``."""

    peer: Drainable | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = Inbox()  # type: ignore[assignment]
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
