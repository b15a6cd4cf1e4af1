"""The presence store contract."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from realtime.messages import Member


class PresenceStore(Protocol):
    """Members per channel, each with its own expiry.

    ``put`` writes (or re-asserts) a member and pushes its expiry ``ttl`` seconds ahead; the
    gateway calls it again for every live member well inside the TTL, so live members never
    expire and a Redis that came back empty is refilled. ``members`` never lists an expired one.
    """

    async def put(self, channel: str, member: Member) -> None: ...

    async def put_many(self, entries: Iterable[tuple[str, Member]]) -> None: ...

    async def remove(self, channel: str, user_id: str) -> None: ...

    async def members(self, channel: str) -> list[Member]: ...

    async def close(self) -> None: ...
