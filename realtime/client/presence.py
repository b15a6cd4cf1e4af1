"""A channel's member list kept exact from what the gateway sends (docs/protocol.md,
"Presence semantics"): every ``presence_sync`` replaces the list (a chunked one once its last
chunk came); after it, events apply only in ``seq`` order. An event at or below the version is
one the list already holds and is skipped; one past the next is a gap, and the list is no
longer trusted until a fresh sync, which the client asks for by subscribing again.

Pure logic, no I/O: the client feeds it frames and acts on what it answers.
"""

from __future__ import annotations

import enum
from types import MappingProxyType

from realtime.client.messages import (
    Member,
    PresenceEvent,
    PresenceLeave,
    PresenceSync,
)


class Outcome(enum.Enum):
    APPLIED = "applied"  # the list changed; hand the event to the application
    STALE = "stale"  # already in the list (an event at or below the version): skip it
    GAP = "gap"  # an event is missing: ask for a fresh sync (once), skip until it comes
    UNSYNCED = "unsynced"  # no sync yet, or waiting for one: skip


class PresenceState:
    """The members of one channel and the presence version they are exact at."""

    def __init__(self) -> None:
        self._members: dict[str, Member] = {}
        self.version: int | None = None  # None: no complete sync yet
        self.resyncing = False  # a gap was seen and a fresh sync asked for
        self._chunks: list[Member] = []

    @property
    def members(self) -> MappingProxyType[str, Member]:
        """user id -> :class:`Member`, read-only."""
        return MappingProxyType(self._members)

    def sync(self, frame: PresenceSync) -> bool:
        """Take a ``presence_sync``; true when the list was replaced (the last chunk came)."""
        if frame.chunks > 1:
            if frame.chunk == 1:
                self._chunks = []
            self._chunks.extend(frame.users)
            if frame.chunk < frame.chunks:
                return False
            users, self._chunks = self._chunks, []
        else:
            users = frame.users
        self._members = {member.user_id: member for member in users}
        self.version = frame.version
        self.resyncing = False
        return True

    def apply(self, event: PresenceEvent) -> Outcome:
        if self.version is None or self.resyncing:
            return Outcome.UNSYNCED
        if event.seq:  # a seed gateway's events carry no seq: applied as they come
            if event.seq <= self.version:
                return Outcome.STALE
            if event.seq > self.version + 1:
                self.resyncing = True
                return Outcome.GAP
            self.version = event.seq
        if isinstance(event, PresenceLeave):
            self._members.pop(event.user_id, None)
        else:
            self._members[event.user_id] = Member(
                user_id=event.user_id, meta=event.meta, updated_at=event.updated_at
            )
        return Outcome.APPLIED

    def forget(self) -> None:
        """The connection dropped: the list stays readable (last known) until the next sync,
        but no event is applied before it."""
        self.version = None
        self.resyncing = False
        self._chunks = []
