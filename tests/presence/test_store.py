"""The presence store contract, run against memory and a real Redis.

Two Redis stores on one server stand for two gateway instances: every decision (join or
update, leave or not) is the scripts', so racing instances cannot double-join or lose a leave.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

from realtime.errors import PresenceFull
from realtime.presence.base import Entry, PresenceStore
from realtime.presence.memory import MemoryPresence
from realtime.presence.redis import VERSION_TTL, RedisPresence, channel_keys
from realtime.redisconn import connect
from realtime.testing.services import RedisServer
from realtime.testing.waiting import wait_until_async
from realtime.wire.messages import Member

pytestmark = pytest.mark.integration


@dataclass
class Events:
    """Every presence event of one channel, in the order they were published."""

    items: list[dict[str, Any]] = field(default_factory=list)
    # Published in version order (by the scripts, or under the memory store's lock); else
    # only ``seq`` orders them.
    ordered: bool = True

    def in_order(self) -> list[dict[str, Any]]:
        return sorted(self.items, key=lambda e: e["seq"])

    def kinds(self, user_id: str | None = None) -> list[str]:
        return [e["type"] for e in self.in_order() if user_id in (None, e["user_id"])]

    def seqs(self) -> list[int]:
        return [e["seq"] for e in self.in_order()]


# (ttl, max_members, grace) -> a new store on the shared backend; every store of one test sees the
# others' state, as gateway instances on one Redis do.
Factory = Callable[..., Awaitable[PresenceStore]]


@pytest.fixture(params=["memory", "redis", "redis-publish-outside"])
async def backend(
    request: pytest.FixtureRequest, channel: str
) -> AsyncIterator[tuple[Factory, Events]]:
    events = Events()
    stores: list[PresenceStore] = []
    if request.param == "memory":
        shared: dict[str, MemoryPresence] = {}

        async def publish(ch: str, data: bytes) -> None:
            assert ch == channel
            events.items.append(json.loads(data))

        async def make_memory(
            ttl: int = 60, max_members: int = 0, grace: float = 0
        ) -> PresenceStore:
            # One process has one memory store: "instances" share it.
            if "store" not in shared:
                shared["store"] = MemoryPresence(ttl, max_members, leave_grace=grace)
                await shared["store"].start(publish)
                stores.append(shared["store"])
            return shared["store"]

        yield make_memory, events
    elif request.param == "redis-publish-outside":
        # As on a Cluster with sharded Pub/Sub: the scripts return the events, the store
        # publishes them through the gateway's bus.
        server: RedisServer = request.getfixturevalue("redis")

        async def publish_outside(ch: str, data: bytes) -> None:
            assert ch == channel
            events.items.append(json.loads(data))

        async def make_outside(
            ttl: int = 60, max_members: int = 0, grace: float = 0
        ) -> PresenceStore:
            store = RedisPresence(
                connect(server.url),
                ttl,
                max_members,
                publish_in_script=False,
                leave_grace=grace,
            )
            await store.start(publish_outside)
            stores.append(store)
            return store

        events.ordered = False
        yield make_outside, events
    else:
        redis: RedisServer = request.getfixturevalue("redis")
        listener = aioredis.Redis.from_url(redis.url)
        pubsub = listener.pubsub()
        await pubsub.subscribe(f"presence.{channel}")

        async def pump() -> None:
            async for message in pubsub.listen():
                if message["type"] == "message":
                    events.items.append(json.loads(message["data"]))

        task = asyncio.create_task(pump())

        async def make_redis(
            ttl: int = 60, max_members: int = 0, grace: float = 0
        ) -> PresenceStore:
            store = RedisPresence(connect(redis.url), ttl, max_members, leave_grace=grace)
            stores.append(store)
            return store

        try:
            yield make_redis, events
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await pubsub.aclose()  # type: ignore[no-untyped-call]
            await listener.aclose()
    for store in stores:
        await store.close()


async def settled(events: Events, count: int) -> None:
    await wait_until_async(lambda: len(events.items) >= count, timeout=5, message="events")
    await asyncio.sleep(0)
    assert len(events.items) == count, events.items


async def test_a_user_with_two_connections_is_one_member(
    backend: tuple[Factory, Events], channel: str
) -> None:
    make, events = backend
    one, two = await make(), await make()
    assert await one.join(channel, "i1.1", Member("u", {"tab": 1})) == "presence_join"
    assert await two.join(channel, "i2.1", Member("u", {"tab": 2})) == "presence_update"
    assert await one.leave(channel, "i1.1", "u") is False
    snapshot = await two.sync(channel)
    assert snapshot.members == [Member("u", {"tab": 2})]
    assert await two.leave(channel, "i2.1", "u") is True
    assert await two.leave(channel, "i2.1", "u") is False  # twice: nothing more
    await settled(events, 3)
    assert events.kinds() == ["presence_join", "presence_update", "presence_leave"]
    assert events.seqs() == [1, 2, 3]
    assert snapshot.version == 2
    final = await one.sync(channel)
    assert (final.version, final.members) == (3, [])


async def test_racing_instances_join_and_leave_each_user_once(
    backend: tuple[Factory, Events], channel: str
) -> None:
    make, events = backend
    one, two = await make(), await make()
    users = [f"u{i}" for i in range(40)]
    await asyncio.gather(
        *(
            store.join(channel, f"{n}.{u}", Member(u))
            for u in users
            for n, store in ((1, one), (2, two))
        )
    )
    await asyncio.gather(
        *(store.leave(channel, f"{n}.{u}", u) for u in users for n, store in ((1, one), (2, two)))
    )
    await settled(events, 40 * 3)
    for user in users:
        assert events.kinds(user) == ["presence_join", "presence_update", "presence_leave"]
    assert events.seqs() == list(range(1, 121))
    if events.ordered:
        assert events.items == events.in_order()
    assert (await one.sync(channel)).members == []


async def test_expired_connections_are_reaped_with_one_leave(
    backend: tuple[Factory, Events], channel: str
) -> None:
    make, events = backend
    store = await make(ttl=1)
    await store.join(channel, "dead.1", Member("ghost"))
    await store.join(channel, "live.1", Member("alive"))

    async def ghost_gone() -> bool:
        await store.refresh([Entry(channel, "live.1", Member("alive"))])
        await store.reap([channel])
        return [m.user_id for m in (await store.sync(channel)).members] == ["alive"]

    await wait_until_async(ghost_gone, timeout=5, interval=0.2)
    await store.reap([channel])
    await settled(events, 3)
    assert events.kinds("ghost") == ["presence_join", "presence_leave"]
    assert events.kinds("alive") == ["presence_join"]


async def test_caps_store_nothing(backend: tuple[Factory, Events], channel: str) -> None:
    make, _ = backend
    store = await make(max_members=2)
    await store.join(channel, "c.1", Member("a"))
    await store.join(channel, "c.2", Member("b"))
    with pytest.raises(PresenceFull):
        await store.join(channel, "c.3", Member("c"))
    await store.join(channel, "c.4", Member("a", {"again": True}))  # a member's own: fine
    snapshot = await store.sync(channel)
    assert sorted(m.user_id for m in snapshot.members) == ["a", "b"]
    assert snapshot.version == 3


async def test_refresh_re_adds_what_the_store_lost(redis: RedisServer, channel: str) -> None:
    store = RedisPresence(connect(redis.url), 60)
    raw = aioredis.Redis.from_url(redis.url)
    try:
        await store.join(channel, "i.1", Member("a", {"k": 1}))
        await raw.delete(*channel_keys(channel))  # as a Redis that came back empty
        entries = [Entry(channel, "i.1", Member("a", {"k": 1}))]
        assert await store.refresh(entries) == 1
        assert await store.refresh(entries) == 0
        snapshot = await store.sync(channel)
        assert snapshot.members == [Member("a", {"k": 1})]
        assert snapshot.version == 1 and snapshot.epoch
    finally:
        await store.close()
        await raw.aclose()


async def test_an_unserved_channels_version_expires_in_minutes_a_served_ones_lasts(
    redis: RedisServer, channel: str
) -> None:
    store = RedisPresence(connect(redis.url), 60)
    raw = aioredis.Redis.from_url(redis.url)
    version, epoch = channel_keys(channel)[4:6]
    try:
        await store.join(channel, "i.1", Member("a"))
        await store.leave(channel, "i.1", "a")
        # Emptied: the bookkeeping goes in minutes, not a day.
        assert 0 < await raw.ttl(version) <= VERSION_TTL <= 15 * 60
        assert 0 < await raw.ttl(epoch) <= VERSION_TTL
        # An instance still serving the channel renews them on each reap tick.
        await raw.expire(version, 5)
        await raw.expire(epoch, 5)
        await store.reap([channel])
        assert await raw.ttl(version) > VERSION_TTL - 10
        assert await raw.ttl(epoch) > VERSION_TTL - 10
        # An absent channel stays absent: reaping it creates nothing.
        other = channel + "-never"
        await store.reap([other])
        assert await raw.exists(*channel_keys(other)) == 0
    finally:
        await store.close()
        await raw.aclose()


async def test_hash_is_readable_as_the_seed_writes_it(redis: RedisServer, channel: str) -> None:
    store = RedisPresence(connect(redis.url), ttl=60)
    raw = aioredis.Redis.from_url(redis.url)
    try:
        await store.join(channel, "i.1", Member("user123", {"name": "Alice"}, 1620000000))
        value = json.loads(await raw.hget(f"presence:{channel}", "user123"))
        assert value == {"user_id": "user123", "meta": {"name": "Alice"}, "updated_at": 1620000000}
        assert 0 < await raw.ttl(f"presence:{channel}") <= 2 * 60 + 5
        # Every key of the channel is in one cluster slot, so the scripts run on a Cluster.
        assert len({key_slot(key.encode()) for key in channel_keys(channel)}) == 1
    finally:
        await store.close()
        await raw.aclose()


async def test_member_written_by_a_seed_gateway_is_listed(redis: RedisServer, channel: str) -> None:
    store = RedisPresence(connect(redis.url), ttl=60)
    raw = aioredis.Redis.from_url(redis.url)
    try:
        seed_value = {"user_id": "seedy", "meta": {"from": "go"}, "updated_at": 1}
        await raw.hset(f"presence:{channel}", "seedy", json.dumps(seed_value))
        await raw.hset(f"presence:{channel}", "garbled", "not json")
        members = sorted((await store.sync(channel)).members, key=lambda m: m.user_id)
        assert members == [Member("garbled"), Member("seedy", {"from": "go"}, 1)]
    finally:
        await store.close()
        await raw.aclose()


async def test_a_refresh_older_than_a_leave_does_not_bring_the_entry_back(
    backend: tuple[Factory, Events], channel: str
) -> None:
    # The soak's "presence outlives closed connections": the refresher snapshots this
    # instance's entries, a leave lands before its script runs, and the script re-added the
    # entry (with a join), refreshed, held by no connection. Here the refresh is simply late.
    make, events = backend
    store = await make()
    await store.join(channel, "i.1", Member("a"))
    await store.join(channel, "i.2", Member("b"))
    snapshot = [Entry(channel, "i.1", Member("a")), Entry(channel, "i.2", Member("b"))]
    await store.leave(channel, "i.1", "a")
    assert await store.refresh(snapshot) == 0
    assert [m.user_id for m in (await store.sync(channel)).members] == ["b"]
    # The same connection joins again after its presence_leave: refreshed as any other.
    await store.join(channel, "i.1", Member("a"))
    await store.leave(channel, "i.1", "a")
    await store.join(channel, "i.1", Member("a"))
    assert await store.refresh(snapshot) == 0
    assert sorted(m.user_id for m in (await store.sync(channel)).members) == ["a", "b"]
    await settled(events, 6)
    assert events.kinds("a") == ["presence_join", "presence_leave"] * 2 + ["presence_join"]


async def test_a_refresh_older_than_a_close_does_not_outlive_the_grace(
    backend: tuple[Factory, Events], channel: str
) -> None:
    make, events = backend
    store = await make(grace=0.2)
    await store.join(channel, "i.1", Member("a"))
    snapshot = [Entry(channel, "i.1", Member("a"))]
    assert await store.linger(channel, "i.1", "a") is True

    async def gone() -> bool:
        await store.reap([channel])
        return (await store.sync(channel)).members == []

    await wait_until_async(gone, timeout=5, interval=0.1, message="the grace's leave")
    assert await store.refresh(snapshot) == 0
    assert (await store.sync(channel)).members == []
    await settled(events, 2)
    assert events.kinds("a") == ["presence_join", "presence_leave"]


async def test_refresh_re_adds_an_entry_reaped_while_its_instance_was_late(
    backend: tuple[Factory, Events], channel: str
) -> None:
    # Not left, only expired (its instance did not refresh in time): the refresh brings it back.
    make, events = backend
    store = await make(ttl=1)
    await store.join(channel, "i.1", Member("a"))
    await store.leave(channel, "i.1", "a")
    await store.join(channel, "i.1", Member("a"))  # joined again: no longer marked as left

    async def reaped() -> bool:
        await store.reap([channel])
        return (await store.sync(channel)).members == []

    await wait_until_async(reaped, timeout=5, interval=0.2, message="the reaper's leave")
    assert await store.refresh([Entry(channel, "i.1", Member("a"))]) == 1
    assert [m.user_id for m in (await store.sync(channel)).members] == ["a"]
    await settled(events, 5)
    assert events.kinds("a") == ["presence_join", "presence_leave"] * 2 + ["presence_join"]
