"""The history store protocol: a bounded, expiring log of each history channel's broadcasts.

Contract, for every store:

- ``append`` assigns the channel's next offset (the last one plus one; 1 for a channel that
  has none) atomically with storing the message, so two instances appending at once never get
  the same offset, and returns the stored bytes: the bus message completed with its
  ``offset`` and ``epoch``.
- ``epoch`` names one run of offsets: it changes whenever the offsets start again from 1 (the
  store lost the channel's history: a Redis that restarted empty, a channel idle past its TTL,
  a gateway restart in embedded mode), so ``(offset, epoch)`` never names two messages.
- ``read`` returns the stored messages after an offset in offset order, and the channel's
  position; reading a channel that has no epoch yet gives it one, so a client told a position
  before the first publish can recover from it.
- A store keeps the last ``size`` messages of a channel, for ``ttl`` seconds after the
  channel's last append.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass
from typing import NamedTuple, Protocol


class Position(NamedTuple):
    """Where a channel's history stands: its last offset (0: none yet) in ``epoch``."""

    offset: int
    epoch: str


@dataclass(frozen=True)
class Page:
    """Messages after an offset, oldest first, with the channel's position when read.

    ``first`` is the oldest offset the store still holds (``position.offset + 1`` when it holds
    none): a reader whose next offset is below it missed messages that were trimmed away."""

    entries: list[tuple[int, bytes]]
    position: Position
    first: int


class HistoryStore(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def append(self, channel: str, body: bytes) -> tuple[Position, bytes]:
        """Store ``body`` (a bus message without its closing brace) as the channel's next
        offset; returns the position it got and the complete message (``complete``)."""
        ...

    async def read(self, channel: str, after: int, limit: int) -> Page:
        """At most ``limit`` messages with offsets above ``after``, oldest first."""
        ...


def complete(body: bytes, offset: int, epoch: str) -> bytes:
    """The bus message ``body`` (without its closing brace) with its offset and epoch; the
    Redis script builds the same bytes in Lua."""
    return b'%s,"offset":%d,"epoch":"%s"}' % (body, offset, epoch.encode())


@dataclass(frozen=True)
class History:
    """What the node needs of history: which channels keep it, where, and how much (the
    most a replay or a page returns)."""

    channels: Container[str]  # HistoryChannels
    store: HistoryStore
    size: int
