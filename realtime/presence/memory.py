"""Presence in this process only: the embedded mode's store, with the Redis store's semantics.

Per-connection entries with their own expiry, one event per user change numbered by the
channel's version, published in version order (a lock spans each change and its publish).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from realtime.errors import PresenceFull
from realtime.presence.base import ChannelState, Entry, Publish, Snapshot
from realtime.wire.messages import Member, bus_presence_body, complete_presence


@dataclass
class _Channel:
    members: dict[str, Member] = field(default_factory=dict)
    # user id -> connection id -> expiry (monotonic seconds)
    conns: dict[str, dict[str, float]] = field(default_factory=dict)
    version: int = 0


class MemoryPresence:
    def __init__(self, ttl: int, max_members: int = 0) -> None:
        self._ttl = ttl
        self._max_members = max_members
        self._channels: dict[str, _Channel] = {}
        self._epoch = uuid.uuid4().hex
        self._lock = asyncio.Lock()
        self._publish: Publish | None = None

    async def start(self, publish: Publish) -> None:
        self._publish = publish

    async def _emit(self, kind: str, channel: str, state: _Channel, member: Member) -> None:
        state.version += 1
        if self._publish is not None:
            body = bus_presence_body(channel, member)
            data = complete_presence(kind, body, state.version, self._epoch)
            await self._publish(channel, data)

    async def join(self, channel: str, conn: str, member: Member) -> str:
        async with self._lock:
            state = self._channels.setdefault(channel, _Channel())
            conns = state.conns.get(member.user_id)
            if (
                not conns
                and self._max_members
                and member.user_id not in state.members
                and len(state.members) >= self._max_members
            ):
                raise PresenceFull(f"channel {channel!r} has {self._max_members} members already")
            conns = state.conns.setdefault(member.user_id, {})
            kind = "presence_update" if conns else "presence_join"
            conns[conn] = time.monotonic() + self._ttl
            state.members[member.user_id] = member
            await self._emit(kind, channel, state, member)
            return kind

    async def leave(self, channel: str, conn: str, user_id: str) -> bool:
        async with self._lock:
            return await self._drop(channel, user_id, conn)

    async def _drop(self, channel: str, user_id: str, conn: str) -> bool:
        state = self._channels.get(channel)
        conns = state.conns.get(user_id) if state is not None else None
        if state is None or conns is None or conns.pop(conn, None) is None:
            return False
        if conns:
            return False
        del state.conns[user_id]
        state.members.pop(user_id, None)
        await self._emit("presence_leave", channel, state, Member(user_id))
        return True

    async def refresh(self, entries: Sequence[Entry]) -> int:
        added = 0
        async with self._lock:
            expires = time.monotonic() + self._ttl
            for channel, conn, member in entries:
                state = self._channels.setdefault(channel, _Channel())
                conns = state.conns.setdefault(member.user_id, {})
                if conn not in conns:
                    added += 1
                    if not conns:
                        state.members[member.user_id] = member
                        conns[conn] = expires
                        await self._emit("presence_join", channel, state, member)
                conns[conn] = expires
        return added

    async def reap(self, channels: Collection[str]) -> dict[str, ChannelState]:
        now = time.monotonic()
        states = {}
        async with self._lock:
            for channel in channels:
                state = self._channels.get(channel)
                if state is None:
                    states[channel] = ChannelState(0, self._epoch)
                    continue
                expired = [
                    (user_id, conn)
                    for user_id, conns in state.conns.items()
                    for conn, expires in conns.items()
                    if expires <= now
                ]
                for user_id, conn in expired:
                    await self._drop(channel, user_id, conn)
                states[channel] = ChannelState(state.version, self._epoch)
        return states

    async def sync(self, channel: str) -> Snapshot:
        version, epoch = (await self.reap([channel]))[channel]
        state = self._channels.get(channel)
        members = list(state.members.values()) if state is not None else []
        return Snapshot(version, epoch, members)

    async def close(self) -> None:
        self._channels.clear()
