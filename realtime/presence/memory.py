"""Presence in this process only: the embedded mode's store."""

from __future__ import annotations

import time
from collections.abc import Iterable

from realtime.messages import Member


class MemoryPresence:
    def __init__(self, ttl: int) -> None:
        self._ttl = ttl
        self._channels: dict[str, dict[str, tuple[Member, float]]] = {}

    async def put(self, channel: str, member: Member) -> None:
        self._channels.setdefault(channel, {})[member.user_id] = (
            member,
            time.monotonic() + self._ttl,
        )

    async def put_many(self, entries: Iterable[tuple[str, Member]]) -> None:
        for channel, member in entries:
            await self.put(channel, member)

    async def remove(self, channel: str, user_id: str) -> None:
        members = self._channels.get(channel)
        if members is not None:
            members.pop(user_id, None)
            if not members:
                del self._channels[channel]

    async def members(self, channel: str) -> list[Member]:
        now = time.monotonic()
        members = self._channels.get(channel, {})
        for user_id in [u for u, (_, expires) in members.items() if expires <= now]:
            del members[user_id]
        return [member for member, _ in members.values()]

    async def close(self) -> None:
        self._channels.clear()
