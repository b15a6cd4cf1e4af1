"""The memory broker delivers in the publisher's task (no task switch between a publish and its
fan-out, so a loop iteration's publishes share one write pass) without giving up per-channel
order when a delivery awaits."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest

from realtime.brokers.memory import MemoryBroker, MemoryBus
from realtime.testing.waiting import wait_until_async
from realtime.wire.messages import BROADCAST, Kind


class Recorder:
    """A deliver callback that records, and can be made to wait on one message."""

    def __init__(self) -> None:
        self.got: list[bytes] = []
        self.hold: bytes | None = None
        self.release = asyncio.Event()
        self.holding = asyncio.Event()

    async def __call__(self, kind: Kind, channel: str, data: bytes) -> None:
        if data == self.hold:
            self.holding.set()
            await self.release.wait()
        self.got.append(data)


@pytest.fixture
async def broker() -> AsyncIterator[tuple[MemoryBroker, Recorder]]:
    recorder = Recorder()
    broker = MemoryBroker(MemoryBus())
    await broker.start(recorder)
    await broker.subscribe(BROADCAST, "c")
    yield broker, recorder
    await broker.close()


async def test_a_publish_is_delivered_before_it_returns(
    broker: tuple[MemoryBroker, Recorder],
) -> None:
    memory, recorder = broker
    await memory.publish(BROADCAST, "c", b"1")
    assert recorder.got == [b"1"]  # in the publisher's task: no iteration in between


async def test_publishes_behind_a_delivery_that_awaits_keep_their_order(
    broker: tuple[MemoryBroker, Recorder],
) -> None:
    memory, recorder = broker
    recorder.hold = b"1"

    async def publisher() -> None:
        await memory.publish(BROADCAST, "c", b"1")
        # Right after "1" is through, "2" and "3" still wait in the queue: "4" goes behind.
        await memory.publish(BROADCAST, "c", b"4")

    first = asyncio.create_task(publisher())
    await asyncio.wait_for(recorder.holding.wait(), 2)
    # Published while "1" is still being delivered: they queue behind it.
    await memory.publish(BROADCAST, "c", b"2")
    await memory.publish(BROADCAST, "c", b"3")
    assert recorder.got == []
    recorder.release.set()
    await first
    await wait_until_async(lambda: len(recorder.got) == 4, timeout=2)
    assert recorder.got == [b"1", b"2", b"3", b"4"]
    # The queue drained: the next publish is delivered in the publisher's task again.
    await memory.publish(BROADCAST, "c", b"5")
    assert recorder.got[-1] == b"5"


async def test_a_raising_deliver_is_logged_and_the_publisher_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def failing(kind: Kind, channel: str, data: bytes) -> None:
        raise RuntimeError("boom")

    memory = MemoryBroker(MemoryBus())
    await memory.start(failing)
    await memory.subscribe(BROADCAST, "c")
    try:
        with caplog.at_level(logging.ERROR, logger="realtime.broker.memory"):
            await memory.publish(BROADCAST, "c", b"1")  # does not raise
        assert "deliver failed" in caplog.text
    finally:
        await memory.close()
