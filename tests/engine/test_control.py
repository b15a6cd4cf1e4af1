"""The control plane's request/reply on in-process brokers: who is waited for, and when an
answer is incomplete."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from realtime.brokers.memory import MemoryBroker, MemoryBus
from realtime.engine.control import CONTROL_CHANNEL, Control, Reply, Request, _encode
from realtime.testing.waiting import wait_until_async
from realtime.wire.messages import BROADCAST, Kind


async def started(bus: MemoryBus, count: int, timeout: float = 0.3) -> list[Control]:
    controls = []
    for n in range(count):

        async def act(request: Request, n: int = n) -> Reply:
            return Reply("", "", count=n + 1, channels={"c": 1})

        broker = MemoryBroker(bus)
        control = Control(broker, act, timeout)

        async def deliver(kind: Kind, channel: str, data: bytes, c: Control = control) -> None:
            assert c.deliver(channel, data)

        await broker.start(deliver)
        await control.start()
        controls.append(control)
    return controls


@pytest.fixture
async def three() -> AsyncIterator[list[Control]]:
    controls = await started(MemoryBus(), 3)
    yield controls
    for control in controls:
        await control.close()
        await control.broker.close()


async def test_every_instance_answers_and_the_answer_is_complete(three: list[Control]) -> None:
    # The newcomers' hellos are answered at once: all know all without waiting 5 s.
    await wait_until_async(lambda: all(len(c.known()) == 3 for c in three), 2)
    gathered = await three[0].ask(Request("channels", ""))
    assert gathered.complete and gathered.instances == 3
    assert sorted(r.count for r in gathered.replies) == [1, 2, 3]


async def test_a_known_instance_that_does_not_answer_makes_it_incomplete(
    three: list[Control],
) -> None:
    await wait_until_async(lambda: all(len(c.known()) == 3 for c in three), 2)
    # An instance that said hello and then went silent.
    await three[1].broker.publish(BROADCAST, CONTROL_CHANNEL, _encode(Request("hello", "ghost")))
    await wait_until_async(lambda: "ghost" in three[0].known(), 2)
    gathered = await three[0].ask(Request("disconnect", "", user="u", code=4000))
    assert not gathered.complete and gathered.instances == 3


def test_garbage_on_the_control_channel_is_dropped() -> None:
    async def act(request: Request) -> Reply:
        raise AssertionError("garbage must not be acted on")

    control = Control(MemoryBroker(MemoryBus()), act, 0.1)
    assert control.deliver(CONTROL_CHANNEL, b"{not json")
    assert control.deliver(control.reply_channel, b'{"id": 1}')
    assert control.known() == {control.instance}


async def test_a_newcomer_knows_the_others_before_the_next_hello() -> None:
    bus = MemoryBus()
    (first,) = await started(bus, 1)
    await wait_until_async(lambda: first.instance in first._known, 2)  # its hello is out
    (second,) = await started(bus, 1)
    try:
        # Well before HELLO_INTERVAL (5 s): the first answered the newcomer's hello.
        await wait_until_async(lambda: first.instance in second.known(), 2)
    finally:
        for control in (first, second):
            await control.close()
            await control.broker.close()
