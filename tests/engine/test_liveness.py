"""The liveness probe: its state machine on a fake clock, and its loop over the in-process
broker (a broker that drops the probe, or says it is down, turns the probe red)."""

from __future__ import annotations

import asyncio

from realtime.brokers.memory import MemoryBroker
from realtime.engine.liveness import Liveness, ProbeState
from realtime.presence.memory import MemoryPresence
from realtime.testing.waiting import wait_until_async
from realtime.wire.messages import BROADCAST, PRESENCE, RESERVED_PREFIX, Kind


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_red_until_the_first_probe_comes_back() -> None:
    clock = Clock()
    state = ProbeState(stale_after=4.0, clock=clock)
    assert not state.healthy
    assert state.report()["error"] == "no probe has come back yet"
    clock.now += 0.5
    state.succeeded(started=clock.now - 0.01)
    assert state.healthy
    assert state.report() == {"ok": True, "last_ok_seconds_ago": 0.0, "error": None}


def test_green_only_after_a_probe_sent_after_the_failure() -> None:
    clock = Clock()
    state = ProbeState(stale_after=4.0, clock=clock)
    state.succeeded(started=clock.now)
    sent_before = clock.now
    clock.now += 1
    state.failed("no probe back within 2s")
    assert not state.healthy and state.report()["error"] == "no probe back within 2s"
    clock.now += 1
    # Under way when the fault struck: it proves nothing about now.
    state.succeeded(started=sent_before)
    assert not state.healthy
    state.succeeded(started=clock.now - 0.001)
    assert state.healthy and state.failures == 1


def test_overdue_when_no_round_succeeds_for_too_long() -> None:
    clock = Clock()
    state = ProbeState(stale_after=4.0, clock=clock)
    state.succeeded(started=clock.now)
    clock.now += 4.0
    assert state.healthy
    clock.now += 0.01
    assert not state.healthy
    assert state.report()["error"] == "probe overdue"


class DeafBroker(MemoryBroker):
    """The in-process broker, but its subscriber silently loses the probe channel: publishes
    are accepted, nothing comes back."""

    async def subscribe(self, kind: Kind, channel: str) -> None:
        if not channel.startswith(RESERVED_PREFIX):
            await super().subscribe(kind, channel)


async def _started(broker: MemoryBroker, interval: float, timeout: float) -> Liveness:
    liveness = Liveness(
        {BROADCAST: broker, PRESENCE: broker}, MemoryPresence(60), interval, timeout
    )

    async def deliver(kind: Kind, channel: str, data: bytes) -> None:
        liveness.deliver(kind, channel, data)

    await broker.start(deliver)
    liveness.start()
    return liveness


async def test_probe_loop_goes_green_through_a_working_broker() -> None:
    broker = MemoryBroker()
    liveness = await _started(broker, 0.05, 0.5)
    try:
        await wait_until_async(lambda: liveness.healthy, 5)
        report = liveness.report()
        # One broker carrying both kinds is probed once, reported under each kind.
        assert report["probes"]["broadcast"] == report["probes"]["presence"]
        assert report["presence_store"] == {"ok": True, "checked": False}
    finally:
        await liveness.close()
        await broker.close()


async def test_deaf_broker_stays_red() -> None:
    broker = DeafBroker()
    liveness = await _started(broker, 0.05, 0.2)
    try:
        await wait_until_async(
            lambda: (
                liveness.report()["probes"]["broadcast"]["error"] == "no probe back within 0.2s"
            ),
            5,
        )
        assert not liveness.healthy
    finally:
        await liveness.close()
        await broker.close()


async def test_broker_not_ready_is_red_then_green_after_a_new_probe() -> None:
    broker = MemoryBroker()
    liveness = await _started(broker, 0.05, 0.5)
    try:
        await wait_until_async(lambda: liveness.healthy, 5)
        broker._closed = True  # ready is false while closed
        await wait_until_async(
            lambda: liveness.report()["probes"]["broadcast"]["error"] == "broker not ready", 5
        )
        assert not liveness.healthy
        broker._closed = False
        await wait_until_async(lambda: liveness.healthy, 5)
    finally:
        await liveness.close()
        await broker.close()


async def test_interval_zero_is_off() -> None:
    broker = MemoryBroker()
    liveness = await _started(broker, 0, 0.5)
    try:
        await asyncio.sleep(0)
        assert not liveness.enabled and liveness.healthy
        assert liveness.report()["probes"] == {}
        await asyncio.sleep(0.1)
        assert broker._subs == set()  # nothing subscribed, nothing published
    finally:
        await liveness.close()
        await broker.close()


class SlowStore(MemoryPresence):
    def __init__(self) -> None:
        super().__init__(60)
        self.answer = True

    async def ping(self) -> None:
        if not self.answer:
            await asyncio.sleep(3600)


async def test_a_store_that_does_not_answer_is_red_until_it_does() -> None:
    broker, store = MemoryBroker(), SlowStore()
    liveness = Liveness({BROADCAST: broker}, store, 0.05, 0.2)

    async def deliver(kind: Kind, channel: str, data: bytes) -> None:
        liveness.deliver(kind, channel, data)

    await broker.start(deliver)
    liveness.start()
    try:
        await wait_until_async(lambda: liveness.healthy, 5)
        store.answer = False
        await wait_until_async(lambda: not liveness.report()["presence_store"]["ok"], 5)
        assert liveness.report()["presence_store"]["error"] == "no answer within 0.2s"
        assert not liveness.healthy
        store.answer = True
        await wait_until_async(lambda: liveness.healthy, 5)
    finally:
        await liveness.close()
        await broker.close()
