"""In-process broker: every MemoryBroker on one bus sees the others' messages.

The embedded mode's backend (nothing but Python needed) and the reference the contract
suite holds real brokers to.

Messages are delivered by the broker's own task, every message queued in one loop iteration
in the next one, after the publisher's step (a client's ``ack`` comes before its own echo). A
queued publish counts as arriving input (``realtime.activity``), so a write pass pending
meanwhile waits for its deliveries and carries them too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from realtime.activity import arrived
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
        self._closed = False

    @classmethod
    def from_settings(cls, settings: Settings) -> MemoryBroker:
        return cls()

    @property
    def ready(self) -> bool:
        return self._task is not None and not self._closed

    async def start(self, deliver: Deliver) -> None:
        self._bus.brokers.add(self)
        self._task = asyncio.create_task(self._run(deliver), name="memory-broker")

    async def publish(self, kind: Kind, channel: str, data: bytes) -> None:
        if self._closed:
            raise BrokerError("memory broker is closed")
        key = (kind, channel)
        for broker in list(self._bus.brokers):
            if key in broker._subs:
                await broker._queue.put((kind, channel, data))
                arrived()

    async def subscribe(self, kind: Kind, channel: str) -> None:
        self._subs.add((kind, channel))

    async def unsubscribe(self, kind: Kind, channel: str) -> None:
        self._subs.discard((kind, channel))

    async def _run(self, deliver: Deliver) -> None:
        while True:
            kind, channel, data = await self._queue.get()
            if (kind, channel) not in self._subs:
                continue
            try:
                await deliver(kind, channel, data)
            except Exception:
                log.exception("deliver failed", extra={"channel": channel})

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._bus.brokers.discard(self)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
