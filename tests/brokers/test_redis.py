"""The redis broker against a real Redis: seed channel names, per-channel interest, reconnect."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from realtime.brokers.redis.classic import RedisBroker
from realtime.errors import BrokerError
from realtime.testing.contract import Inbox
from realtime.testing.services import RedisServer, redis_server
from realtime.testing.waiting import wait_until_async

pytestmark = pytest.mark.integration


@pytest.fixture
async def pair(redis: RedisServer) -> AsyncIterator[tuple[RedisBroker, Inbox, RedisBroker, Inbox]]:
    a, b, inbox_a, inbox_b = RedisBroker(redis.url), RedisBroker(redis.url), Inbox(), Inbox()
    await a.start(inbox_a)
    await b.start(inbox_b)
    yield a, inbox_a, b, inbox_b
    await a.close()
    await b.close()


async def test_publish_reaches_every_subscribed_instance(pair, channel: str) -> None:  # type: ignore[no-untyped-def]
    a, inbox_a, b, inbox_b = pair
    await a.subscribe("broadcast", channel)
    await b.subscribe("broadcast", channel)
    await a.publish("broadcast", channel, b"one")
    for inbox in (inbox_a, inbox_b):
        await wait_until_async(lambda inbox=inbox: inbox.items == [("broadcast", channel, b"one")])


async def test_only_subscribed_channels_and_kinds_arrive(pair, channel: str) -> None:  # type: ignore[no-untyped-def]
    a, inbox_a, b, _ = pair
    await a.subscribe("presence", channel)
    await a.subscribe("broadcast", channel + "-other")
    await a.unsubscribe("broadcast", channel + "-other")
    await b.publish("broadcast", channel, b"not for a")
    await b.publish("broadcast", channel + "-other", b"unsubscribed")
    await b.publish("presence", channel, b"for a")
    await wait_until_async(lambda: inbox_a.items == [("presence", channel, b"for a")])


async def test_seed_gateway_interoperates(redis: RedisServer, pair, channel: str) -> None:  # type: ignore[no-untyped-def]
    a, inbox_a, _, _ = pair
    seed = aioredis.Redis.from_url(redis.url)
    pubsub = seed.pubsub()
    try:
        # A seed gateway listens with patterns and publishes on the same names.
        await pubsub.psubscribe("broadcast.*", "presence.*")
        await a.publish("broadcast", channel, b"to seed")
        message = await wait_until_async(
            lambda: pubsub.get_message(ignore_subscribe_messages=True, timeout=1), 5
        )
        assert message["channel"] == f"broadcast.{channel}".encode()
        assert message["data"] == b"to seed"
        await a.subscribe("broadcast", channel)
        await seed.publish(f"broadcast.{channel}", b"from seed")
        await wait_until_async(lambda: ("broadcast", channel, b"from seed") in inbox_a.items)
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await seed.aclose()


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


async def test_reconnects_and_resubscribes_after_redis_restart(own_redis: RedisServer) -> None:
    broker, inbox = RedisBroker(own_redis.url), Inbox()
    await broker.start(inbox)
    try:
        await broker.subscribe("broadcast", "survivor")
        own_redis.restart()

        async def delivered() -> bool:
            # Until the subscriber is back, a publish may fail or reach nobody: retry.
            try:
                await broker.publish("broadcast", "survivor", b"after restart")
            except BrokerError:
                return False
            return bool(inbox.items)

        await wait_until_async(delivered, timeout=15, interval=0.2)
        assert broker.ready
        assert inbox.items[0] == ("broadcast", "survivor", b"after restart")
    finally:
        await broker.close()


async def test_publish_to_a_dead_redis_raises(own_redis: RedisServer) -> None:
    broker = RedisBroker(own_redis.url)
    await broker.start(Inbox())
    try:
        own_redis.stop()
        with pytest.raises(BrokerError):
            await broker.publish("broadcast", "c", b"x")
        await wait_until_async(lambda: not broker.ready, timeout=10)
    finally:
        await broker.close()
        await broker.close()  # twice is harmless
