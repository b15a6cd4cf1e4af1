"""The pipelined publisher both Redis brokers share, against a fake round trip (pure logic; the
contract suite runs it on real Redis servers)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from realtime.brokers.redis.common import PUBLISH_BATCH, Publisher, split_topic, topic
from realtime.errors import BrokerError
from realtime.testing.waiting import wait_until_async


class RoundTrips:
    """A ``send`` that holds each round trip open until the test releases it."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[str, bytes]]] = []
        self.release = asyncio.Event()
        self.fail_next: BaseException | None = None

    async def __call__(self, batch: list[tuple[str, bytes]]) -> None:
        self.batches.append(batch)
        await self.release.wait()
        if self.fail_next is not None:
            error, self.fail_next = self.fail_next, None
            raise error


@pytest.fixture
async def sent() -> AsyncIterator[tuple[Publisher, RoundTrips]]:
    trips = RoundTrips()
    publisher = Publisher(trips)
    yield publisher, trips
    await publisher.close()


async def test_what_queues_during_a_round_trip_goes_out_together_in_order(sent) -> None:  # type: ignore[no-untyped-def]
    publisher, trips = sent
    first = publisher.put("broadcast.c", b"0")
    await wait_until_async(lambda: len(trips.batches) == 1, 5)
    rest = [publisher.put("broadcast.c", b"%d" % i) for i in range(1, 6)]
    resolved: list[int] = []
    for i, future in enumerate([first, *rest]):
        future.add_done_callback(lambda _, i=i: resolved.append(i))
    trips.release.set()
    await asyncio.wait_for(asyncio.gather(first, *rest), 5)
    assert trips.batches == [
        [("broadcast.c", b"0")],
        [("broadcast.c", b"%d" % i) for i in range(1, 6)],
    ]
    assert resolved == list(range(6))


async def test_a_batch_holds_at_most_publish_batch(sent) -> None:  # type: ignore[no-untyped-def]
    publisher, trips = sent
    trips.release.set()
    futures = [publisher.put("broadcast.c", b"%d" % i) for i in range(PUBLISH_BATCH + 3)]
    await asyncio.wait_for(asyncio.gather(*futures), 5)
    assert [len(batch) for batch in trips.batches] == [PUBLISH_BATCH, 3]


async def test_a_failed_round_trip_fails_its_batch_only(sent) -> None:  # type: ignore[no-untyped-def]
    publisher, trips = sent
    trips.fail_next = RedisConnectionError("connection reset")
    failed = [publisher.put("broadcast.c", b"a"), publisher.put("broadcast.c", b"b")]
    await wait_until_async(lambda: len(trips.batches) == 1, 5)
    later = publisher.put("broadcast.c", b"c")
    trips.release.set()
    for future in failed:
        with pytest.raises(BrokerError, match="connection reset"):
            await asyncio.wait_for(future, 5)
    await asyncio.wait_for(later, 5)


async def test_close_fails_queued_and_later_publishes(sent) -> None:  # type: ignore[no-untyped-def]
    publisher, trips = sent
    in_flight = publisher.put("broadcast.c", b"a")
    await wait_until_async(lambda: len(trips.batches) == 1, 5)
    queued = publisher.put("broadcast.c", b"b")
    await publisher.close()
    await publisher.close()
    for future in (in_flight, queued, publisher.put("broadcast.c", b"late")):
        with pytest.raises(BrokerError, match="closed"):
            await asyncio.wait_for(future, 5)


def test_topics_are_the_seed_channel_names() -> None:
    assert topic("presence", "room.1") == "presence.room.1"
    assert split_topic("broadcast.room.1") == ("broadcast", "room.1")
    assert split_topic("presence.") is None
    assert split_topic("other.room") is None
