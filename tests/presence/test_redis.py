"""Presence in a real Redis: the seed's layout, per-member expiry."""

from __future__ import annotations

import json
import time

import pytest
import redis.asyncio as aioredis

from realtime.messages import Member
from realtime.presence.redis import RedisPresence
from realtime.redisconn import connect
from realtime.testing.servers import RedisServer, wait_until_async

pytestmark = pytest.mark.integration


async def test_hash_is_readable_as_the_seed_writes_it(redis: RedisServer, channel: str) -> None:
    store = RedisPresence(connect(redis.url), ttl=60)
    raw = aioredis.Redis.from_url(redis.url)
    try:
        await store.put(channel, Member("user123", {"name": "Alice"}, 1620000000))
        value = json.loads(await raw.hget(f"presence:{channel}", "user123"))
        assert value == {"user_id": "user123", "meta": {"name": "Alice"}, "updated_at": 1620000000}
        assert 0 < await raw.ttl(f"presence:{channel}") <= 60
    finally:
        await store.close()
        await raw.aclose()


async def test_member_written_by_a_seed_gateway_is_listed(redis: RedisServer, channel: str) -> None:
    store = RedisPresence(connect(redis.url), ttl=60)
    raw = aioredis.Redis.from_url(redis.url)
    try:
        seed_value = {"user_id": "seedy", "meta": {"from": "go"}, "updated_at": 1}
        await raw.hset(f"presence:{channel}", "seedy", json.dumps(seed_value))
        assert await store.members(channel) == [Member("seedy", {"from": "go"}, 1)]
    finally:
        await store.close()
        await raw.aclose()


async def test_each_member_expires_on_its_own(redis: RedisServer, channel: str) -> None:
    store = RedisPresence(connect(redis.url), ttl=1)
    try:
        await store.put(channel, Member("stale"))
        deadline = time.time() + 1

        # Keep "fresh" alive past stale's expiry: the channel's hash itself stays.
        async def only_fresh_left() -> bool:
            await store.put(channel, Member("fresh"))
            ids = {m.user_id for m in await store.members(channel)}
            return ids == {"fresh"} and time.time() > deadline

        await wait_until_async(only_fresh_left, timeout=5, interval=0.2)
    finally:
        await store.close()


async def test_remove(redis: RedisServer, channel: str) -> None:
    store = RedisPresence(connect(redis.url), ttl=60)
    try:
        await store.put_many([(channel, Member("a")), (channel, Member("b"))])
        await store.remove(channel, "a")
        assert [m.user_id for m in await store.members(channel)] == ["b"]
    finally:
        await store.close()
