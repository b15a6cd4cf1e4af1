"""Live order on history channels: held, waited for, filled from history, or reported lost."""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
import pytest

from realtime.engine.ordering import Ordering
from realtime.history.base import Page, Position
from realtime.history.memory import MemoryHistory
from realtime.testing.waiting import wait_until_async
from realtime.wire.frames import Outgoing
from realtime.wire.messages import BusMessage, bus_broadcast, client_frame, decode_bus

CHANNEL = "orders.1"


class Line:
    """A history channel: a real memory store, the ordering under test, what it delivered."""

    def __init__(self) -> None:
        self.store = MemoryHistory(100, 300)
        self.sent: list[int] = []
        self.told: list[dict[str, object]] = []
        self.reads = 0
        self.ordering = Ordering(self.read, self.send, self.tell, 0.02, 100)
        self.stored: list[BusMessage] = []
        self.store_position: int | None = None

    async def read(self, channel: str, after: int, limit: int):  # type: ignore[no-untyped-def]
        self.reads += 1
        page = await self.store.read(channel, after, limit)
        if limit == 0 and self.store_position is not None:
            # As if read before the later publishes: the position alone.
            return Page([], Position(self.store_position, page.position.epoch), page.first)
        return page

    def send(self, channel: str, message: BusMessage, frame: Outgoing) -> None:
        assert msgspec.json.decode(frame.data)["offset"] == message.offset
        self.sent.append(message.offset)

    def tell(self, channel: str, frame: Outgoing) -> None:
        self.told.append(msgspec.json.decode(frame.data))

    async def publish(self, count: int) -> None:
        for n in range(count):
            data = bus_broadcast(CHANNEL, "e", msgspec.Raw(b"%d" % n))
            _, stored = await self.store.append(CHANNEL, data[:-1])
            self.stored.append(decode_bus(stored))

    def arrive(self, *offsets: int) -> None:
        for offset in offsets:
            message = self.stored[offset - 1]
            self.ordering.accept(CHANNEL, message, client_frame(message))


@pytest.fixture
async def line() -> AsyncIterator[Line]:
    line = Line()
    yield line
    await line.ordering.close()


async def test_in_order_goes_straight_through(line: Line) -> None:
    await line.publish(3)
    line.arrive(1, 2, 3)
    assert line.sent == [1, 2, 3] and line.reads == 0


async def test_one_ahead_waits_for_the_missing_one(line: Line) -> None:
    await line.publish(3)
    line.arrive(1, 3)
    assert line.sent == [1]
    line.arrive(2)
    assert line.sent == [1, 2, 3]
    assert line.reads == 0  # the gap closed by itself: history was not read


async def test_a_gap_is_filled_from_history(line: Line) -> None:
    await line.publish(5)
    line.arrive(1, 4, 5)  # 2 and 3 never come live (an instance's subscriber was down)
    await wait_until_async(lambda: line.sent == [1, 2, 3, 4, 5], timeout=5)
    assert line.ordering.filled == 2 and line.told == []
    line.arrive(2, 3)  # late after all: already delivered
    assert line.sent == [1, 2, 3, 4, 5]


async def test_a_gap_history_no_longer_has_is_reported(line: Line) -> None:
    line.store = MemoryHistory(2, 300)  # keeps only the last two
    await line.publish(5)
    line.arrive(1, 5)
    await wait_until_async(lambda: 5 in line.sent, timeout=5)
    assert line.sent == [1, 4, 5]
    (told,) = line.told
    assert told["code"] == "broadcasts_lost" and told["channel"] == CHANNEL
    assert "2 to 3" in str(told["message"]) and line.ordering.lost == 2


async def test_duplicates_are_dropped(line: Line) -> None:
    await line.publish(2)
    line.arrive(1, 1, 2, 1, 2)
    assert line.sent == [1, 2]


async def test_one_published_before_the_first_seen_still_goes_out(line: Line) -> None:
    await line.publish(3)
    line.arrive(2, 1, 3)
    assert line.sent == [2, 1, 3]


async def test_forget_starts_the_count_afresh(line: Line) -> None:
    await line.publish(6)
    line.arrive(1, 3)
    line.ordering.forget(CHANNEL)
    line.arrive(5, 6)
    assert line.sent == [1, 5, 6] and line.reads == 0


async def test_the_count_starts_at_the_position_read_after_subscribing(line: Line) -> None:
    await line.publish(2)
    assert line.ordering.open(CHANNEL)
    assert not line.ordering.open(CHANNEL)  # a second subscriber joins the same count
    await line.publish(2)
    line.arrive(4, 1)  # both while the position is read: held
    assert line.sent == []
    # The position was 2 when read here: 1 is from before the subscription, 3 is awaited.
    line.store_position = 2
    await line.ordering.begin(CHANNEL)
    assert line.sent == []
    line.arrive(3)
    assert line.sent == [3, 4]
