"""Presence in Redis, readable by seed gateways.

``presence:<channel>`` is a hash user id -> ``{"user_id","meta","updated_at"}`` JSON, exactly as
the seed writes it. Beside it, ``{presence:<channel>}:expiry`` is a sorted set user id -> expiry
(Unix seconds), so one member expires on its own instead of living as long as anyone in the
channel refreshes the hash's TTL. Members a seed gateway wrote have no expiry entry: they are
listed until the hash's own TTL drops them, as in the seed.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from realtime.errors import PresenceError
from realtime.messages import Member, decode_member, encode

BATCH = 500


def hash_key(channel: str) -> str:
    return f"presence:{channel}"


def expiry_key(channel: str) -> str:
    # The hash tag puts it in the hash's cluster slot: {presence:c} hashes like presence:c.
    return f"{{presence:{channel}}}:expiry"


class RedisPresence:
    def __init__(self, client: aioredis.Redis, ttl: int) -> None:
        self._client = client
        self._ttl = ttl

    async def put(self, channel: str, member: Member) -> None:
        await self.put_many([(channel, member)])

    async def put_many(self, entries: Iterable[tuple[str, Member]]) -> None:
        entries = list(entries)
        expires = time.time() + self._ttl
        try:
            for start in range(0, len(entries), BATCH):
                async with self._client.pipeline(transaction=False) as pipe:
                    for channel, member in entries[start : start + BATCH]:
                        self._put(pipe, channel, member, expires)
                    await pipe.execute()
        except RedisError as exc:
            raise PresenceError(f"redis presence write failed: {exc}") from exc

    def _put(
        self, pipe: aioredis.client.Pipeline, channel: str, member: Member, expires: float
    ) -> None:
        pipe.hset(hash_key(channel), member.user_id, encode(member))
        pipe.zadd(expiry_key(channel), {member.user_id: expires})
        # The seed's whole-hash TTL stays, so a channel whose gateways all died disappears.
        pipe.expire(hash_key(channel), self._ttl)
        pipe.expire(expiry_key(channel), self._ttl)

    async def remove(self, channel: str, user_id: str) -> None:
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.hdel(hash_key(channel), user_id)
                pipe.zrem(expiry_key(channel), user_id)
                await pipe.execute()
        except RedisError as exc:
            raise PresenceError(f"redis presence write failed: {exc}") from exc

    async def members(self, channel: str) -> list[Member]:
        try:
            async with self._client.pipeline(transaction=True) as pipe:
                pipe.hgetall(hash_key(channel))
                pipe.zrangebyscore(expiry_key(channel), "-inf", time.time())
                raw, expired = await pipe.execute()
            gone = {u.decode() for u in expired}
            if gone:
                async with self._client.pipeline(transaction=True) as pipe:
                    pipe.hdel(hash_key(channel), *gone)
                    pipe.zrem(expiry_key(channel), *gone)
                    await pipe.execute()
        except RedisError as exc:
            raise PresenceError(f"redis presence read failed: {exc}") from exc
        members = []
        for field, value in raw.items():
            user_id = field.decode()
            if user_id in gone:
                continue
            try:
                members.append(decode_member(value))
            except msgspec.MsgspecError:
                members.append(Member(user_id))  # a foreign writer's value: list the user anyway
        return members

    async def close(self) -> None:
        await self._client.aclose()
