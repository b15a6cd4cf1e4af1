"""The ASGI lifespan: start the node within its bound, stop it at shutdown; a stop signal
during start-up ends the start instead of waiting for it.

uvicorn runs the lifespan's start-up before it binds the port, with its own SIGTERM/SIGINT
handlers installed; they only set a flag that uvicorn reads once start-up is over. A broker
whose ``start()`` hangs would then hold the process until SIGKILL. While the node starts, this
module chains a handler in front of uvicorn's that also cancels the start.

A start that fails, times out or is interrupted is logged as one line, then reported to the
server as ``lifespan.startup.failed`` with no message (uvicorn adds "Application startup
failed. Exiting." and exits with code 3, before binding the port).

Once started, a stop signal drains the instance before uvicorn's handler sees it
(``drain.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

from starlette.types import Receive, Scope, Send

from realtime import metrics
from realtime.auth.notices import open_notices
from realtime.config import Settings, describe
from realtime.engine.node import Node
from realtime.errors import StartError
from realtime.server.drain import Drain, DrainOnSignal

log = logging.getLogger("realtime")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# Allocations between two young collections once serving (see Lifespan._start).
YOUNG_GC_THRESHOLD = 50_000


class Lifespan:
    """The ``lifespan`` scope of :class:`realtime.server.app.RealtimeApp`."""

    def __init__(
        self, node: Node, settings: Settings, freeze_gc: bool = False, drain: Drain | None = None
    ) -> None:
        self.node = node
        self.settings = settings
        self.freeze_gc = freeze_gc
        # Between start-up and shutdown a stop signal drains first (realtime.server.drain).
        self._on_signal = DrainOnSignal(drain) if drain is not None else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        assert message["type"] == "lifespan.startup", message
        try:
            await self._start()
        except StartError as exc:
            log.error("start-up failed: %s", exc)
            await self._close()
            await send({"type": "lifespan.startup.failed", "message": ""})
            return
        if self._on_signal is not None:
            self._on_signal.install()
        await send({"type": "lifespan.startup.complete"})
        message = await receive()
        assert message["type"] == "lifespan.shutdown", message
        if self._on_signal is not None:
            self._on_signal.uninstall()
        await self._close()
        # Under --workers: this worker's live gauges leave the shared sum (a SIGKILLed
        # worker's stay until the gateway restarts; docs/operations.md).
        metrics.worker_exited(os.getpid())
        await send({"type": "lifespan.shutdown.complete"})

    async def _start(self) -> None:
        task = asyncio.create_task(self.node.start(), name="realtime-start")
        stopped: list[int] = []
        with _stop_signals_cancel(task, stopped):
            try:
                await task
            except asyncio.CancelledError:
                if not stopped:
                    raise
                name = signal.Signals(stopped[0]).name
                raise StartError(f"stopped by {name} during start-up") from None
        if self.freeze_gc:
            # Everything alive after start-up moves out of the collector's reach: a full
            # collection then scans only what connections create (short pauses, short tails).
            gc.collect()
            gc.freeze()
            # A connection's handshake allocates a few hundred objects: at the default young
            # threshold (700) a burst of connects collects every few handshakes, and each
            # collection promotes what it scanned toward the full collections. 50,000 cuts the
            # collections' share of connecting 10,000 clients from about a fifth to a tenth
            # (docs/benchmarks.md); the garbage a young collection frees waits that much longer.
            gc.set_threshold(YOUNG_GC_THRESHOLD, 20, 10)
        for notice in open_notices(self.settings):
            log.warning(notice)
        log.info("gateway ready: %s", describe(self.settings))

    async def _close(self) -> None:
        # Bounded too: a broker whose close() hangs must not keep a stopping gateway alive.
        try:
            async with asyncio.timeout(self.settings.start_timeout):
                await self.node.close()
        except TimeoutError:
            log.error(
                "closing the brokers and presence store took over %gs; exiting anyway",
                self.settings.start_timeout,
            )


@contextlib.contextmanager
def _stop_signals_cancel(task: asyncio.Task[None], stopped: list[int]) -> Iterator[None]:
    """While the block runs, SIGTERM or SIGINT also cancels ``task`` (after calling the handler
    that was there, uvicorn's). Signals are only handled in the main thread: elsewhere (a
    gateway run by a test in a thread) this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()
    previous: dict[signal.Signals, Any] = {}

    def handler(signum: int, frame: FrameType | None) -> None:
        stopped.append(signum)
        loop.call_soon_threadsafe(task.cancel)
        chained: Callable[[int, FrameType | None], Any] | Any = previous.get(signal.Signals(signum))
        # Python's own SIGINT handler would raise KeyboardInterrupt into the event loop.
        if callable(chained) and chained is not signal.default_int_handler:
            chained(signum, frame)

    for sig in STOP_SIGNALS:
        previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
