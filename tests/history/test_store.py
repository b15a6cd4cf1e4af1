"""The history store contract, run against memory and a real Redis.

Two Redis stores on one server stand for two gateway instances: offsets are the script's, so
instances appending at once never share one."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable

import msgspec
import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

from realtime.history.base import HistoryStore
from realtime.history.memory import MemoryHistory
from realtime.history.redis import RedisHistory, history_keys
from realtime.redisconn import connect
from realtime.testing.services import RedisServer
from realtime.wire.messages import bus_broadcast, decode_bus

Factory = Callable[..., Awaitable[HistoryStore]]


def body(n: int, channel: str = "c") -> bytes:
    data = bus_broadcast(channel, "e", msgspec.Raw(json.dumps({"n": n}).encode()), "u")
    return data[:-1]


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration)])
async def make(request: pytest.FixtureRequest) -> AsyncIterator[Factory]:
    stores: list[HistoryStore] = []
    shared: dict[tuple[int, int], MemoryHistory] = {}

    async def factory(size: int = 100, ttl: int = 60) -> HistoryStore:
        store: HistoryStore
        if request.param == "memory":
            # One process has one memory store: "instances" share it.
            store = shared.setdefault((size, ttl), MemoryHistory(size, ttl))
        else:
            server: RedisServer = request.getfixturevalue("redis")
            store = RedisHistory(connect(server.url), size, ttl)
        await store.start()
        stores.append(store)
        return store

    yield factory
    for store in stores:
        await store.close()


async def test_offsets_count_up_by_one_and_messages_carry_them(make: Factory, channel: str) -> None:
    store = await make()
    positions = []
    for n in range(1, 4):
        position, data = await store.append(channel, body(n, channel))
        message = decode_bus(data)
        assert (message.offset, message.epoch) == position
        assert json.loads(bytes(message.payload)) == {"n": n}
        positions.append(position)
    assert [p.offset for p in positions] == [1, 2, 3]
    assert len({p.epoch for p in positions}) == 1 and positions[0].epoch
    page = await store.read(channel, 1, 10)
    assert [offset for offset, _ in page.entries] == [2, 3]
    assert [json.loads(bytes(decode_bus(d).payload))["n"] for _, d in page.entries] == [2, 3]
    assert page.position == positions[-1]
    assert page.first == 1


async def test_read_is_limited_and_paginates(make: Factory, channel: str) -> None:
    store = await make()
    for n in range(1, 8):
        await store.append(channel, body(n, channel))
    first = await store.read(channel, 0, 3)
    assert [o for o, _ in first.entries] == [1, 2, 3]
    second = await store.read(channel, 3, 3)
    assert [o for o, _ in second.entries] == [4, 5, 6]
    assert [o for o, _ in (await store.read(channel, 6, 3)).entries] == [7]
    assert (await store.read(channel, 7, 3)).entries == []


async def test_trimmed_to_size(make: Factory, channel: str) -> None:
    store = await make(size=3)
    for n in range(1, 7):
        await store.append(channel, body(n, channel))
    page = await store.read(channel, 0, 100)
    assert [o for o, _ in page.entries] == [4, 5, 6]
    assert page.first == 4 and page.position.offset == 6


async def test_a_read_gives_a_new_channel_its_epoch(make: Factory, channel: str) -> None:
    store = await make()
    page = await store.read(channel, 0, 10)
    assert page.position.offset == 0 and page.position.epoch
    assert page.first == 1 and page.entries == []
    position, _ = await store.append(channel, body(1, channel))
    assert position == (1, page.position.epoch)


async def test_concurrent_appends_never_share_an_offset(make: Factory, channel: str) -> None:
    a, b = await make(), await make()
    results = await asyncio.gather(
        *(store.append(channel, body(n, channel)) for n in range(100) for store in (a, b))
    )
    assert sorted(p.offset for p, _ in results) == list(range(1, 201))
    assert len({p.epoch for p, _ in results}) == 1


async def test_channels_are_apart(make: Factory, channel: str) -> None:
    store = await make()
    await store.append(channel, body(1, channel))
    other = channel + "-other"
    position, _ = await store.append(other, body(1, other))
    assert position.offset == 1


@pytest.mark.integration
async def test_redis_keys_of_a_channel_share_a_slot() -> None:
    for channel in ("room", "a{b}c", "x}y", "{z", "}{"):
        stream, meta = history_keys(channel)
        assert key_slot(stream.encode()) == key_slot(meta.encode()), channel


@pytest.mark.integration
async def test_redis_history_lost_starts_a_new_epoch(redis: RedisServer, channel: str) -> None:
    store = RedisHistory(connect(redis.url), 100, 60)
    try:
        before, _ = await store.append(channel, body(1, channel))
        await store.append(channel, body(2, channel))
        admin = aioredis.Redis.from_url(redis.url)
        # As a Redis that restarted without persistence: the channel's keys are gone.
        await admin.delete(*history_keys(channel))
        await admin.aclose()
        after, _ = await store.append(channel, body(3, channel))
        assert after.offset == 1 and after.epoch != before.epoch
    finally:
        await store.close()


@pytest.mark.integration
async def test_redis_keys_expire_after_ttl(redis: RedisServer, channel: str) -> None:
    store = RedisHistory(connect(redis.url), 100, 30)
    try:
        await store.append(channel, body(1, channel))
        admin = aioredis.Redis.from_url(redis.url)
        ttls = [await admin.ttl(key) for key in history_keys(channel)]
        await admin.aclose()
        assert all(0 < ttl <= 30 for ttl in ttls), ttls
    finally:
        await store.close()


async def test_memory_history_forgets_a_channel_after_ttl(channel: str) -> None:
    now = [1000.0]
    store = MemoryHistory(100, 30, clock=lambda: now[0])
    before, _ = await store.append(channel, body(1, channel))
    now[0] += 29
    assert (await store.read(channel, 0, 10)).position == before
    now[0] += 2  # past the TTL counted from the append (a read does not extend it)
    read = (await store.read(channel, 0, 10)).position
    assert read.offset == 0 and read.epoch != before.epoch
    after, _ = await store.append(channel, body(2, channel))
    assert after == (1, read.epoch)


async def test_memory_history_sweeps_idle_channels_away() -> None:
    now = [1000.0]
    store = MemoryHistory(100, 30, clock=lambda: now[0])
    for n in range(50):
        await store.append(f"idle-{n}", body(n))
    now[0] += 61  # past the TTL and the sweep's interval
    await store.append("busy", body(1))
    assert list(store._streams) == ["busy"]
