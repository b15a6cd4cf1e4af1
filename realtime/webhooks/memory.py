"""Embedded mode: the presence store tells this process's deliverer each event directly."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import uuid
from collections import deque
from collections.abc import Collection

from realtime import metrics
from realtime.webhooks.events import WebhookEvent
from realtime.webhooks.poster import Poster

log = logging.getLogger("realtime.webhooks")

BATCH = 100  # events per POST at most


class MemoryWebhooks:
    """A bounded queue: while the receiver is down at most ``queue_size`` events wait (plus the
    batch being retried); a newer event pushes the oldest out, counted in ``dropped``."""

    def __init__(self, poster: Poster, events: Collection[str], queue_size: int) -> None:
        self.poster = poster
        self._events = frozenset(events)
        self._size = queue_size
        self._queue: deque[WebhookEvent] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._prefix = uuid.uuid4().hex[:12]
        self.dropped = 0

    def put(self, event: WebhookEvent) -> None:
        if event.name not in self._events:
            return
        if len(self._queue) >= self._size:
            self._queue.popleft()
            self.dropped += 1
            metrics.WEBHOOKS_DROPPED.inc()
        event.id = f"{self._prefix}-{next(self._ids)}"
        self._queue.append(event)
        self._wake.set()

    @property
    def queued(self) -> int:
        return len(self._queue)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="realtime-webhooks")

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch = [self._queue.popleft() for _ in range(min(BATCH, len(self._queue)))]
                try:
                    await self.poster.post(batch)
                except asyncio.CancelledError:
                    raise
                except Exception:  # the loop must outlive any surprise; the batch is lost
                    log.exception("webhook delivery failed; %d events dropped", len(batch))
                    self.dropped += len(batch)
                    metrics.WEBHOOKS_DROPPED.inc(len(batch))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.poster.close()
