"""The presence store contract.

A member is a user present in a channel through one or more connections, on any instance. The
store keeps one entry per (channel, connection) with its own expiry, decides atomically whether
a change is a join, an update or a leave of the *user*, numbers every change with the channel's
version, and publishes the event itself, so that events go out in version order.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Sequence
from typing import NamedTuple, Protocol

from realtime.wire.messages import Member

# (channel, bus message bytes): how a store that cannot publish by itself reaches the bus.
Publish = Callable[[str, bytes], Awaitable[None]]


class ChannelState(NamedTuple):
    """A channel's version, and the epoch that changes when the store lost its state (a Redis
    that came back empty starts the version again from 0 under a new epoch)."""

    version: int
    epoch: str


class Snapshot(NamedTuple):
    """The members of a channel exactly as of ``version``."""

    version: int
    epoch: str
    members: list[Member]


class Entry(NamedTuple):
    """One local connection's presence, as the refresher re-asserts it."""

    channel: str
    conn: str
    member: Member


class PresenceStore(Protocol):
    """Per-connection entries, per-user events, one version counter per channel.

    - ``join`` adds or refreshes the connection's entry and writes the user's meta; it emits
      ``presence_join`` when the user had no connection in the channel, else ``presence_update``,
      and returns that type. A user whose entries are all in their leave grace is back: the
      graced entries go, and only a changed meta is an event (``presence_update``); the same
      meta is none, and ``join`` returns ``""``. Over the member cap it raises
      :class:`PresenceFull`.
    - ``leave`` drops the entry; ``presence_leave`` goes out only with the user's last one. A
      deliberate leave: entries of the user still in their grace go with it.
    - ``linger`` (a connection closed) keeps the entry, unrefreshed, for the store's leave grace
      when it is the user's last live one, so the reaper announces the leave only at the end of
      the grace; it returns True when the entry lingers. With another live connection of the
      user it drops the entry as ``leave`` would (no event).
    - ``refresh`` pushes the entries' expiry ``ttl`` ahead and re-adds (with a join event) any
      the store lost; it returns how many it re-added.
    - ``reap`` drops expired entries of ``channels``, announcing each user left, exactly once.
    - ``sync`` reaps, then lists the channel at its version, atomically.
    """

    async def start(self, publish: Publish) -> None: ...

    async def join(self, channel: str, conn: str, member: Member) -> str: ...

    async def leave(self, channel: str, conn: str, user_id: str) -> bool: ...

    async def linger(self, channel: str, conn: str, user_id: str) -> bool: ...

    async def refresh(self, entries: Sequence[Entry]) -> int: ...

    async def reap(self, channels: Collection[str]) -> dict[str, ChannelState]: ...

    async def sync(self, channel: str) -> Snapshot: ...

    async def close(self) -> None: ...
