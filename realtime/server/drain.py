"""Graceful drain: what a stop signal does before uvicorn's own shutdown.

uvicorn, on SIGTERM or SIGINT, stops listening at once and closes every WebSocket with 1012 in
the same instant: every client of the instance reconnects at once (a stampede on the next
instance), and HTTP requests that arrive while the balancer has not yet noticed get a refused
or reset connection. Instead, on the first signal:

1. ``/readyz`` answers 503 ``"status": "draining"`` (the balancer takes the instance out), new
   WebSocket upgrades get 503 before they are accepted, and HTTP keeps being served, each
   response with ``connection: close`` so no idle keep-alive connection is left to be cut
   when the port closes;
2. open WebSockets are closed with 1012 in even batches spread over ``SHUTDOWN_DRAIN_SECONDS``
   (none in the first instant: ``/readyz`` is red before the first client reconnects); each
   close runs the connection's normal teardown, so its presence leaves are published;
3. once every connection has gone (or :data:`CLOSE_WAIT_SECONDS` after the last close), new
   connections are held off the port and the ones the kernel has queued are accepted
   (``listeners.quiesce``: none is reset when the port closes), then the signal is handed to
   the handler that was there before, uvicorn's, which stops listening,
   answers the requests in flight (at most ``SHUTDOWN_GRACE_SECONDS`` in ``cli.py``) and runs
   the lifespan's shutdown.

A second SIGTERM or SIGINT during the drain (from :data:`DUPLICATE_SECONDS` after the first)
goes to uvicorn's handler at once: the remaining connections are closed together (1012), as
before this module existed.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any, Protocol

from starlette.types import Message, Receive, Scope, Send

from realtime.server import listeners

log = logging.getLogger("realtime.server.drain")

CLOSE_RESTARTING = 1012
# Batches are at least this far apart: a drain of thousands of sockets is a few dozen wakeups
# a second, not one per socket.
TICK_SECONDS = 0.05
# How long the drain waits, after its last close, for connections to finish their teardown
# (the client's close frame, presence leaves) before handing over to uvicorn anyway.
CLOSE_WAIT_SECONDS = 3.0
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# A second signal this soon after the first is the same stop told twice, not an operator
# insisting: systemd signals every process of the unit and uvicorn's --workers supervisor
# then signals its workers again; a terminal's Ctrl+C reaches the whole process group.
DUPLICATE_SECONDS = 1.0


class Closable(Protocol):
    def close(self, code: int, reason: str) -> None: ...


class Drain:
    """The instance's drain state: the connections it will close, and whether it has begun.
    The WebSocket endpoint adds and discards connections; ``/readyz``, the endpoint and
    :class:`ClosingHttp` read :attr:`draining`."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.draining = False
        self._open: dict[Closable, None] = {}  # insertion-ordered: oldest first
        self._empty = asyncio.Event()
        self._empty.set()
        # The ports requests came in on: the ones whose listening sockets the drain quiesces.
        self.ports: set[int] = set()

    def add(self, peer: Closable) -> None:
        self._open[peer] = None
        self._empty.clear()

    def discard(self, peer: Closable) -> None:
        self._open.pop(peer, None)
        if not self._open:
            self._empty.set()

    def __len__(self) -> int:
        return len(self._open)

    async def run(self) -> None:
        """Turn red, close every open connection (1012) spread over ``seconds``, and return
        once they have all gone or :data:`CLOSE_WAIT_SECONDS` after the last close."""
        self.draining = True
        peers = list(self._open)
        count = len(peers)
        log.info(
            "draining: /readyz answers 503, new WebSockets are refused, %d open ones close"
            " over %gs (a second signal exits at once)",
            count,
            self.seconds,
        )
        loop = asyncio.get_running_loop()
        start = loop.time()
        steps = min(count, max(1, int(self.seconds / TICK_SECONDS)))
        for step in range(steps):
            # Batch `step` closes at the end of its slot: nothing in the first instant.
            due = start + self.seconds * (step + 1) / steps
            await asyncio.sleep(max(0.0, due - loop.time()))
            for peer in peers[step * count // steps : (step + 1) * count // steps]:
                if peer in self._open:
                    peer.close(CLOSE_RESTARTING, "server restarting")
        try:
            async with asyncio.timeout(CLOSE_WAIT_SECONDS):
                await self._empty.wait()
        except TimeoutError:
            log.warning("%d connections still closing; stopping anyway", len(self._open))
        # uvicorn closes the port next: hold new connections off first, so none is reset
        # while it waits in the accept queue (realtime/server/listeners.py).
        await listeners.quiesce(self.ports)
        log.info("drained in %.2fs", loop.time() - start)


class ClosingHttp:
    """ASGI wrapper for HTTP while draining: responses carry ``connection: close``, so the
    client opens its next request elsewhere instead of reusing a connection that uvicorn's
    shutdown is about to cut."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Any], drain: Drain) -> None:
        self.app = app
        self.drain = drain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        server = scope.get("server")
        if server is not None and server[1] is not None:
            self.drain.ports.add(server[1])
        if not self.drain.draining:
            await self.app(scope, receive, send)
            return

        async def closing(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive, closing)


class DrainOnSignal:
    """From start-up to shutdown, the first SIGTERM or SIGINT runs the drain before reaching
    the handler that was there (uvicorn's); a second one reaches it at once. Signals are only
    handled in the main thread: elsewhere (a gateway run by a test in a thread) this does
    nothing and uvicorn's handling stays as it is."""

    def __init__(self, drain: Drain) -> None:
        self.drain = drain
        self._previous: dict[signal.Signals, Any] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._begun = False
        self._forwarded = False
        self._first = 0.0

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        self._loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)

    def uninstall(self) -> None:
        """Put the previous handlers back (at shutdown); stop a drain still running."""
        previous, self._previous = self._previous, {}
        for sig, old in previous.items():
            signal.signal(sig, old)
        if self._task is not None:
            self._task.cancel()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        loop = self._loop
        if not self._begun and loop is not None and not loop.is_closed():
            self._begun = True
            self._first = time.monotonic()
            loop.call_soon_threadsafe(self._start, signum)
            return
        if self._begun and time.monotonic() - self._first < DUPLICATE_SECONDS:
            return
        if self._begun and not self._forwarded:
            log.warning("second stop signal: closing every connection now")
        if self._task is not None and loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._task.cancel)
        self._forward(signum, frame)

    def _start(self, signum: int) -> None:
        if self._forwarded:  # a second signal came before the drain began
            return
        self._task = asyncio.create_task(self._drain_then_forward(signum), name="realtime-drain")

    async def _drain_then_forward(self, signum: int) -> None:
        try:
            await self.drain.run()
        finally:
            # Done, or cancelled by a second signal or the shutdown: uvicorn takes over.
            if not self._forwarded:
                self._forward(signum, None)

    def _forward(self, signum: int, frame: FrameType | None) -> None:
        self._forwarded = True
        chained = self._previous.get(signal.Signals(signum))
        # Python's own SIGINT handler would raise KeyboardInterrupt into the event loop.
        if callable(chained) and chained is not signal.default_int_handler:
            chained(signum, frame)
        elif chained is not None:
            # Not a server's handler: restore it and let the signal do what it did before us.
            signal.signal(signum, chained)
            signal.raise_signal(signum)
