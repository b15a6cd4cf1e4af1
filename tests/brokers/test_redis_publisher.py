"""The pipelined publisher both Redis brokers share, against a fake round trip (pure logic; the
contract suite runs it on real Redis servers)."""

from __future__ import annotations

import asyncio
import contextlib
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


async def test_each_answer_is_bounded_from_when_it_was_asked() -> None:
    # Round trips that never come back (a frozen Redis): the batch in flight fails at its
    # oldest publish's deadline, and what queued behind it at its own, instead of each waiting
    # for a whole round trip behind the one ahead.
    trips = RoundTrips()
    deadline = 0.3
    publisher = Publisher(trips, deadline=deadline)
    loop = asyncio.get_running_loop()
    answers: list[float] = []

    async def publish(i: int) -> None:
        asked = loop.time()
        with pytest.raises(BrokerError, match="no answer within"):
            await publisher.put("broadcast.c", b"%d" % i)
        answers.append(loop.time() - asked)

    try:
        first = asyncio.create_task(publish(0))
        await wait_until_async(lambda: len(trips.batches) == 1, 5)
        await asyncio.sleep(deadline / 2)  # the rest ask while the first batch hangs
        rest = [asyncio.create_task(publish(i)) for i in range(1, 4)]
        await asyncio.wait_for(asyncio.gather(first, *rest), 5)
    finally:
        await publisher.close()
    assert len(answers) == 4
    assert max(answers) < deadline + 0.2, answers
    # What was sent kept its order.
    assert trips.batches == [
        [("broadcast.c", b"0")],
        [("broadcast.c", b"%d" % i) for i in (1, 2, 3)],
    ]


async def test_what_waited_past_its_deadline_is_failed_unsent() -> None:
    # A round trip that overruns the deadline (a send that does not give up in time): what
    # queued behind it is failed when the writer gets to it, never sent late.
    loop = asyncio.get_running_loop()
    batches: list[list[tuple[str, bytes]]] = []

    async def stubborn(batch: list[tuple[str, bytes]]) -> None:
        batches.append(batch)
        if len(batches) == 1:
            end = loop.time() + 0.4
            while loop.time() < end:
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.sleep(end - loop.time())

    publisher = Publisher(stubborn, deadline=0.2)
    try:
        first = publisher.put("broadcast.c", b"0")
        await wait_until_async(lambda: len(batches) == 1, 5)
        queued = publisher.put("broadcast.c", b"1")
        await asyncio.wait_for(first, 5)  # it was answered, late: the truth is a success
        with pytest.raises(BrokerError, match="no answer within"):
            await asyncio.wait_for(queued, 5)
        await asyncio.wait_for(publisher.put("broadcast.c", b"2"), 5)
    finally:
        await publisher.close()
    assert batches == [[("broadcast.c", b"0")], [("broadcast.c", b"2")]]


async def test_a_late_batch_does_not_fail_what_is_still_in_time() -> None:
    trips = RoundTrips()
    publisher = Publisher(trips, deadline=0.5)
    try:
        first = publisher.put("broadcast.c", b"0")
        await wait_until_async(lambda: len(trips.batches) == 1, 5)
        with pytest.raises(BrokerError, match="no answer within"):
            await asyncio.wait_for(first, 5)
        trips.release.set()  # Redis answers again
        later = [publisher.put("broadcast.c", b"%d" % i) for i in (1, 2)]
        await asyncio.wait_for(asyncio.gather(*later), 5)
        sent = [item for batch in trips.batches[1:] for item in batch]
        assert sent == [("broadcast.c", b"1"), ("broadcast.c", b"2")]
    finally:
        await publisher.close()
