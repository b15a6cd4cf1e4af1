"""The leave grace in the store contract, on memory and a real Redis: a closed connection's
entry lingers, a return within the grace is no event (or one update), a user who does not
return leaves once at the end of it, and a deliberate leave stays immediate."""

from __future__ import annotations

import time

import pytest
import redis.asyncio as aioredis

from realtime.presence.base import Entry, PresenceStore
from realtime.presence.redis import RedisPresence, channel_keys
from realtime.redisconn import connect
from realtime.testing.services import RedisServer
from realtime.testing.waiting import wait_until_async
from realtime.wire.messages import Member
from tests.presence.test_store import Events, Factory, backend, settled

__all__ = ["backend"]  # the fixture, shared with the contract tests

pytestmark = pytest.mark.integration

GRACE = 1.0


async def members(store: PresenceStore, channel: str) -> list[str]:
    return sorted(m.user_id for m in (await store.sync(channel)).members)


async def reaped_leave(store: PresenceStore, channel: str, events: Events) -> float:
    """Reap (as the upkeep does) until the leave is out; returns when that was (monotonic)."""

    async def left() -> bool:
        await store.reap([channel])
        return "presence_leave" in events.kinds()

    await wait_until_async(left, timeout=GRACE + 5, interval=0.05, message="leave")
    return time.monotonic()


async def test_a_closed_connection_lingers_through_the_grace_then_leaves_once(
    backend: tuple[Factory, Events], channel: str
) -> None:
    make, events = backend
    store = await make(grace=GRACE)
    await store.join(channel, "i1.1", Member("u", {"n": 1}))
    closed = time.monotonic()
    assert await store.linger(channel, "i1.1", "u") is True
    assert await store.linger(channel, "i1.1", "u") is False  # twice: nothing more
    await store.reap([channel])
    # Still present during the grace: a sync lists the user, nothing went out.
    assert await members(store, channel) == ["u"]
    left = await reaped_leave(store, channel, events)
    assert left - closed >= GRACE - 0.05
    await store.reap([channel])
    await settled(events, 2)
    assert events.kinds() == ["presence_join", "presence_leave"]
    assert events.seqs() == [1, 2]
    assert await members(store, channel) == []
    assert await store.linger(channel, "i1.1", "u") is False  # gone: nothing to keep


async def test_a_return_within_the_grace_is_no_event_or_one_update(
    backend: tuple[Factory, Events], channel: str
) -> None:
    make, events = backend
    one, two = await make(grace=GRACE), await make(grace=GRACE)
    assert await one.join(channel, "i1.1", Member("u", {"n": 1}, 100)) == "presence_join"
    assert await one.linger(channel, "i1.1", "u")
    # Back on another instance, same meta: nothing changed for anyone.
    assert await two.join(channel, "i2.1", Member("u", {"n": 1}, 200)) == ""
    assert await two.linger(channel, "i2.1", "u")
    # Back again with a new meta: that alone is news.
    assert await one.join(channel, "i1.2", Member("u", {"n": 2}, 300)) == "presence_update"
    snapshot = await one.sync(channel)
    assert snapshot.members == [Member("u", {"n": 2}, 300)]
    # The graced entries went when the user came back: the grace ending changes nothing.
    started = time.monotonic()
    while time.monotonic() - started < GRACE + 0.3:
        await one.reap([channel])
        assert await members(one, channel) == ["u"]
    assert await one.leave(channel, "i1.2", "u") is True
    await settled(events, 3)
    assert events.kinds() == ["presence_join", "presence_update", "presence_leave"]
    assert events.seqs() == [1, 2, 3]


async def test_a_second_live_connection_closing_leaves_nothing_behind(
    backend: tuple[Factory, Events], channel: str
) -> None:
    make, events = backend
    store = await make(grace=60)
    assert await store.join(channel, "i1.1", Member("u", {"n": 1})) == "presence_join"
    # A new connection of a present user, same meta: no change (a reconnect may race the old
    # connection's close); a new meta is one update.
    assert await store.join(channel, "i1.2", Member("u", {"n": 1})) == ""
    assert await store.join(channel, "i1.2", Member("u", {"n": 2})) == "presence_update"
    # The user stays through i1.2: i1.1 goes at once, as without a grace.
    assert await store.linger(channel, "i1.1", "u") is False
    assert await store.linger(channel, "i1.2", "u") is True
    # A deliberate leave from a new connection is immediate, graced entries or not (the
    # refresh re-adds an entry it lost while the user's other one is in its grace).
    assert await store.refresh([Entry(channel, "i1.3", Member("u", {"n": 2}))]) == 1
    assert await store.leave(channel, "i1.3", "u") is True
    await settled(events, 3)
    assert events.kinds() == ["presence_join", "presence_update", "presence_leave"]
    assert await members(store, channel) == []


async def test_a_refresh_on_its_way_does_not_undo_a_grace(
    backend: tuple[Factory, Events], channel: str
) -> None:
    make, events = backend
    store = await make(grace=GRACE)  # TTL 60: only the grace can end the entry in time
    await store.join(channel, "i1.1", Member("u"))
    stale = [Entry(channel, "i1.1", Member("u"))]  # read before the connection closed
    assert await store.linger(channel, "i1.1", "u")
    assert await store.refresh(stale) == 0
    await reaped_leave(store, channel, events)
    await settled(events, 2)
    assert events.kinds() == ["presence_join", "presence_leave"]


async def test_keys_outlive_a_grace_longer_than_the_ttl(redis: RedisServer, channel: str) -> None:
    store = RedisPresence(connect(redis.url), ttl=1, leave_grace=30)
    raw = aioredis.Redis.from_url(redis.url)
    try:
        await store.join(channel, "i.1", Member("u"))
        assert await store.linger(channel, "i.1", "u")
        graced = channel_keys(channel)[6]
        assert await raw.hget(graced, "u") == b"i.1"
        for key in (*channel_keys(channel)[:4], graced):
            assert await raw.ttl(key) > 30, key  # the reaper still finds it after the grace
        # Back: the graced entry goes at once, so a user who flaps leaves nothing piling up.
        assert await store.join(channel, "i.2", Member("u")) == ""
        assert await raw.exists(graced) == 0
        assert await raw.zrange(channel_keys(channel)[2], 0, -1) == [b"i.2 u"]
        assert await raw.hget(channel_keys(channel)[3], "u") == b"1"
    finally:
        await store.close()
        await raw.aclose()
