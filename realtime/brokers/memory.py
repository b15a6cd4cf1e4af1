"""In-process broker: every MemoryBroker on one bus sees the others' messages.

The embedded mode's backend (nothing but Python needed) and the reference the contract
suite holds real brokers to.

A publish is delivered in the publisher's own task when nothing is queued or being delivered
ahead of it: no task switch between a publish and its fan-out, so every publish served in one
loop iteration reaches the subscribers' write buffers in that iteration and goes out in one
pass (``realtime.server.direct.Flusher``), as a batch read from Redis does. Otherwise it
waits in the queue behind the others, so per-channel order holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from realtime.errors import BrokerError
from realtime.wire.messages import Kind

if TYPE_CHECKING:
    from realtime.brokers.base import Deliver
    from realtime.config import Settings

log = logging.getLogger("realtime.broker.memory")
QUEUE_SIZE = 10_000


class MemoryBus:
    """The shared medium; one per process by default."""

    def __init__(self) -> None:
        self.brokers: set[MemoryBroker] = set()


DEFAULT_BUS = MemoryBus()


class MemoryBroker:
    def __init__(self, bus: MemoryBus | None = None) -> None:
        self._bus = bus or DEFAULT_BUS
        self._subs: set[tuple[Kind, str]] = set()
        # Bounded: a publisher waits rather than letting a slow receiver grow memory.
        self._queue: asyncio.Queue[tuple[Kind, str, bytes]] = asyncio.Queue(QUEUE_SIZE)
        self._task: asyncio.Task[None] | None = None
        self._deliver: Deliver | None = None
        # Messages queued or taken from the queue and not yet delivered: while any is, a
        # publish queues behind them.
        self._backlog = 0
        # A delivery is running (in a publisher's task or ours); set while none is, for the
        # queue's task to wait on so it never overtakes one that awaits.
        self._delivering = False
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed = False

    @classmethod
    def from_settings(cls, settings: Settings) -> MemoryBroker:
        return cls()

    @property
    def ready(self) -> bool:
        return self._task is not None and not self._closed

    async def start(self, deliver: Deliver) -> None:
        self._bus.brokers.add(self)
        self._deliver = deliver
        self._task = asyncio.create_task(self._run(deliver), name="memory-broker")

    async def publish(self, kind: Kind, channel: str, data: bytes) -> None:
        if self._closed:
            raise BrokerError("memory broker is closed")
        key = (kind, channel)
        for broker in list(self._bus.brokers):
            if key in broker._subs:
                await broker._take(kind, channel, data)

    async def _take(self, kind: Kind, channel: str, data: bytes) -> None:
        if self._deliver is None or self._delivering or self._backlog:
            self._backlog += 1
            try:
                await self._queue.put((kind, channel, data))
            except BaseException:
                self._backlog -= 1  # cancelled while the queue was full: never queued
                raise
            return
        await self._hand_over(self._deliver, kind, channel, data)

    async def _hand_over(self, deliver: Deliver, kind: Kind, channel: str, data: bytes) -> None:
        self._delivering = True
        self._idle.clear()
        try:
            await deliver(kind, channel, data)
        except Exception:
            log.exception("deliver failed", extra={"channel": channel})
        finally:
            self._delivering = False
            self._idle.set()

    async def subscribe(self, kind: Kind, channel: str) -> None:
        self._subs.add((kind, channel))

    async def unsubscribe(self, kind: Kind, channel: str) -> None:
        self._subs.discard((kind, channel))

    async def _run(self, deliver: Deliver) -> None:
        while True:
            kind, channel, data = await self._queue.get()
            try:
                while self._delivering:
                    await self._idle.wait()
                if (kind, channel) in self._subs:
                    await self._hand_over(deliver, kind, channel, data)
            finally:
                self._backlog -= 1

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._bus.brokers.discard(self)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
