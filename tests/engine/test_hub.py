"""The hub: upstream interest follows the first and last local subscriber of a channel."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from realtime.brokers.memory import MemoryBroker, MemoryBus
from realtime.engine.hub import Hub
from realtime.errors import BrokerError
from realtime.testing.waiting import wait_until_async
from realtime.wire.frames import Outgoing
from realtime.wire.messages import BROADCAST, PRESENCE, Kind
from tests.engine.fakes import RecordingPeer


class WatchedBroker(MemoryBroker):
    """A memory broker that counts upstream changes, and can stall or refuse them."""

    def __init__(self) -> None:
        super().__init__(MemoryBus())
        self.calls: list[tuple[str, Kind, str]] = []
        self.upstream: set[tuple[Kind, str]] = set()
        self.subscribing = asyncio.Event()  # clear it to stall subscribes in the MQ
        self.subscribing.set()
        self.unsubscribing = asyncio.Event()
        self.unsubscribing.set()
        self.fail = False

    async def subscribe(self, kind: Kind, channel: str) -> None:
        self.calls.append(("subscribe", kind, channel))
        await self.subscribing.wait()
        if self.fail:
            raise BrokerError("refused")
        await super().subscribe(kind, channel)
        self.upstream.add((kind, channel))

    async def unsubscribe(self, kind: Kind, channel: str) -> None:
        self.calls.append(("unsubscribe", kind, channel))
        await self.unsubscribing.wait()
        await super().unsubscribe(kind, channel)
        self.upstream.discard((kind, channel))


@pytest.fixture
def broker() -> WatchedBroker:
    return WatchedBroker()


@pytest.fixture
def hub(broker: WatchedBroker) -> Hub:
    return Hub({BROADCAST: broker, PRESENCE: broker})


async def test_subscribes_on_the_first_peer_and_unsubscribes_on_the_last(
    hub: Hub, broker: WatchedBroker
) -> None:
    a, b = RecordingPeer("a"), RecordingPeer("b")
    await hub.add(a, BROADCAST, "room")
    await hub.add(b, BROADCAST, "room")
    assert broker.calls == [("subscribe", BROADCAST, "room")]
    assert hub.local(BROADCAST, "room") == {a, b}
    assert hub.local(PRESENCE, "room") == set()  # kinds are apart
    await hub.remove(a, BROADCAST, "room")
    await hub.remove(a, BROADCAST, "room")  # twice is harmless
    assert broker.upstream == {(BROADCAST, "room")}
    await hub.remove(b, BROADCAST, "room")
    assert broker.calls[1:] == [("unsubscribe", BROADCAST, "room")]
    assert broker.upstream == set()
    assert hub.channels(BROADCAST) == 0


async def test_a_refused_subscribe_registers_nothing(hub: Hub, broker: WatchedBroker) -> None:
    peer = RecordingPeer()
    broker.fail = True
    with pytest.raises(BrokerError):
        await hub.add(peer, BROADCAST, "room")
    assert hub.local(BROADCAST, "room") == set()
    assert hub.channels(BROADCAST) == 0
    broker.fail = False
    await hub.add(peer, BROADCAST, "room")  # a retry subscribes upstream again
    assert broker.upstream == {(BROADCAST, "room")}
    assert hub.local(BROADCAST, "room") == {peer}


async def test_an_add_racing_the_last_remove_keeps_broker_and_peers_in_step(
    hub: Hub, broker: WatchedBroker
) -> None:
    leaving, coming = RecordingPeer("leaving"), RecordingPeer("coming")
    await hub.add(leaving, BROADCAST, "room")
    broker.unsubscribing.clear()  # the unsubscribe stalls in the MQ
    removing = asyncio.create_task(hub.remove(leaving, BROADCAST, "room"))
    await wait_until_async(lambda: ("unsubscribe", BROADCAST, "room") in broker.calls, timeout=5)
    adding = asyncio.create_task(hub.add(coming, BROADCAST, "room"))
    # The add must wait for the unsubscribe: a subscribe that overtook it would be undone.
    key = (BROADCAST, "room")
    await wait_until_async(lambda: adding.done() or hub._locks.users(key) == 2, timeout=5)
    broker.unsubscribing.set()
    await asyncio.wait_for(asyncio.gather(removing, adding), 5)
    assert hub.local(BROADCAST, "room") == {coming}
    assert broker.upstream == {(BROADCAST, "room")}
    assert [call[0] for call in broker.calls] == ["subscribe", "unsubscribe", "subscribe"]


async def test_racing_first_adds_subscribe_upstream_once(hub: Hub, broker: WatchedBroker) -> None:
    peers = [RecordingPeer(f"p{i}") for i in range(5)]
    broker.subscribing.clear()
    adding = [asyncio.create_task(hub.add(peer, BROADCAST, "room")) for peer in peers]
    await wait_until_async(lambda: hub._locks.users((BROADCAST, "room")) == 5, timeout=5)
    broker.subscribing.set()
    await asyncio.wait_for(asyncio.gather(*adding), 5)
    assert broker.calls == [("subscribe", BROADCAST, "room")]
    assert hub.local(BROADCAST, "room") == set(peers)


async def test_the_lock_map_keeps_only_channels_in_flux(hub: Hub, broker: WatchedBroker) -> None:
    peer = RecordingPeer()
    for i in range(50):
        await hub.add(peer, BROADCAST, f"room-{i}")
    broker.fail = True
    for i in range(50):
        with pytest.raises(BrokerError):
            await hub.add(peer, PRESENCE, f"room-{i}")
    broker.fail = False
    for i in range(50):
        await hub.remove(peer, BROADCAST, f"room-{i}")
    assert len(hub._locks) == 0
    broker.subscribing.clear()
    adding = [asyncio.create_task(hub.add(RecordingPeer(), BROADCAST, "busy")) for _ in range(3)]
    # One add holds the lock while its subscribe is in the MQ; the other two await it.
    await wait_until_async(lambda: hub._locks.users((BROADCAST, "busy")) == 3, timeout=5)
    assert len(hub._locks) == 1
    broker.subscribing.set()
    await asyncio.wait_for(asyncio.gather(*adding), 5)
    assert len(hub._locks) == 0


# --- fan_out: a batcher's peers are handed to it as one set, the rest are sent to --------


class RecordingBatcher:
    """A ``Batcher`` (the direct path's Flusher) that keeps what it is handed."""

    def __init__(self) -> None:
        self.calls: list[tuple[frozenset[Any], Outgoing]] = []

    def fan_out(self, members: frozenset[Any], frame: Outgoing) -> None:
        self.calls.append((members, frame))


class BatchedPeer(RecordingPeer):
    def __init__(self, batcher: RecordingBatcher, user_id: str) -> None:
        super().__init__(user_id)
        self.batcher = batcher


def frame(n: int) -> Outgoing:
    return Outgoing(b'{"n":%d}' % n)


async def test_fan_out_hands_each_batcher_its_peers_as_one_set_and_sends_to_the_rest(
    hub: Hub,
) -> None:
    one, two = RecordingBatcher(), RecordingBatcher()
    a, b, c = BatchedPeer(one, "a"), BatchedPeer(one, "b"), BatchedPeer(two, "c")
    plain = RecordingPeer("plain")
    for peer in (a, b, c, plain):
        await hub.add(peer, BROADCAST, "room")
    first, second = frame(1), frame(2)
    hub.fan_out(BROADCAST, "room", first)
    hub.fan_out(BROADCAST, "room", second)
    assert one.calls == [(frozenset({a, b}), first), (frozenset({a, b}), second)]
    assert two.calls == [(frozenset({c}), first), (frozenset({c}), second)]
    # The same set object while the subscribers stay: how a batcher sees consecutive
    # broadcasts of one channel.
    assert one.calls[0][0] is one.calls[1][0]
    # A peer without a batcher is sent each frame, and batched peers never are.
    assert plain.frames == [{"n": 1}, {"n": 2}]
    assert a.frames == b.frames == c.frames == []
    hub.fan_out(BROADCAST, "elsewhere", frame(3))  # no subscribers: nothing
    hub.fan_out(PRESENCE, "room", frame(4))  # kinds are apart
    assert len(one.calls) == 2 and len(plain.frames) == 2


async def test_fan_out_follows_subscribes_and_unsubscribes(hub: Hub) -> None:
    batcher = RecordingBatcher()
    a, b, c = (BatchedPeer(batcher, name) for name in "abc")
    plain, other = RecordingPeer("plain"), RecordingPeer("other")
    await hub.add(a, BROADCAST, "room")  # the channel's first: subscribes upstream
    hub.fan_out(BROADCAST, "room", frame(1))
    await hub.add(b, BROADCAST, "room")  # already served
    await hub.add(plain, BROADCAST, "room")
    hub.fan_out(BROADCAST, "room", frame(2))
    await hub.remove(a, BROADCAST, "room")
    await hub.add(c, BROADCAST, "room")
    await hub.add(other, BROADCAST, "room")
    await hub.remove(plain, BROADCAST, "room")
    hub.fan_out(BROADCAST, "room", frame(3))
    assert [(set(members), f.data) for members, f in batcher.calls] == [
        ({a}, frame(1).data),
        ({a, b}, frame(2).data),
        ({b, c}, frame(3).data),
    ]
    assert plain.frames == [{"n": 2}]
    assert other.frames == [{"n": 3}]
    # The last one gone, then back: the channel is served anew and its new set is used.
    for peer in (b, c, other):
        await hub.remove(peer, BROADCAST, "room")
    hub.fan_out(BROADCAST, "room", frame(4))
    await hub.add(a, BROADCAST, "room")
    hub.fan_out(BROADCAST, "room", frame(5))
    assert [(set(members), f.data) for members, f in batcher.calls[3:]] == [({a}, frame(5).data)]
