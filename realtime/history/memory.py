"""History in this process only (embedded mode): per channel a deque of the last ``size``
messages, its last offset and its epoch.

A channel is forgotten ``ttl`` seconds after its last append (or the read that gave it an
epoch), checked on each access and by a sweep on append, so memory holds only channels in use;
one used again starts a new epoch at offset 1, as a Redis channel whose keys expired does.
The store's epochs are new at each start: a gateway restart loses history, and says so.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from realtime.history.base import Page, Position, complete


@dataclass
class _Stream:
    epoch: str
    expires: float
    offset: int = 0
    entries: deque[tuple[int, bytes]] = field(default_factory=deque)


class MemoryHistory:
    def __init__(self, size: int, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.size = size
        self._clock = clock
        self.ttl = ttl
        self._streams: dict[str, _Stream] = {}
        self._run = uuid.uuid4().hex[:8]
        self._serial = itertools.count(1)
        self._next_sweep = 0.0

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._streams.clear()

    def _stream(self, channel: str, now: float) -> _Stream:
        stream = self._streams.get(channel)
        if stream is None or stream.expires <= now:
            # Unique within this process's run, and runs differ: never reused.
            epoch = f"{self._run}.{next(self._serial)}"
            stream = self._streams[channel] = _Stream(epoch, now + self.ttl)
        return stream

    def _sweep(self, now: float) -> None:
        if now < self._next_sweep:
            return
        self._next_sweep = now + min(self.ttl, 60.0)
        for channel in [c for c, s in self._streams.items() if s.expires <= now]:
            del self._streams[channel]

    async def append(self, channel: str, body: bytes) -> tuple[Position, bytes]:
        now = self._clock()
        self._sweep(now)
        stream = self._stream(channel, now)
        stream.offset += 1
        data = complete(body, stream.offset, stream.epoch)
        stream.entries.append((stream.offset, data))
        if len(stream.entries) > self.size:
            stream.entries.popleft()
        stream.expires = now + self.ttl
        return Position(stream.offset, stream.epoch), data

    async def read(self, channel: str, after: int, limit: int) -> Page:
        stream = self._stream(channel, self._clock())
        position = Position(stream.offset, stream.epoch)
        first = stream.entries[0][0] if stream.entries else stream.offset + 1
        start = max(after + 1, first) - first  # index of the first entry to return
        entries = list(itertools.islice(stream.entries, start, start + max(limit, 0)))
        return Page(entries, position, first)
