"""The memory broker's deliveries come from its own task, after the publisher's step (a
client's ack before its own echo), and a queued publish counts as arriving input, so a write
pass pending meanwhile waits for its deliveries (``realtime.server.direct.Flusher``)."""

from __future__ import annotations

from realtime.activity import ARRIVALS
from realtime.brokers.memory import MemoryBroker, MemoryBus
from realtime.testing.waiting import wait_until_async
from realtime.wire.messages import BROADCAST, Kind


async def test_a_publish_is_delivered_after_the_publishers_step_and_counts_as_input() -> None:
    got: list[bytes] = []

    async def deliver(kind: Kind, channel: str, data: bytes) -> None:
        got.append(data)

    memory = MemoryBroker(MemoryBus())
    await memory.start(deliver)
    await memory.subscribe(BROADCAST, "c")
    try:
        before = ARRIVALS.count
        await memory.publish(BROADCAST, "c", b"1")
        await memory.publish(BROADCAST, "c", b"2")
        assert got == []  # the publisher's step goes on first: its ack precedes its echo
        assert ARRIVALS.count == before + 2
        await wait_until_async(lambda: got == [b"1", b"2"], timeout=2)
        await memory.publish(BROADCAST, "other", b"3")  # no subscriber: not queued, no input
        assert ARRIVALS.count == before + 2
    finally:
        await memory.close()
