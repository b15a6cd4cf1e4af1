"""The node with recording peers on the real in-process broker and presence store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import msgspec
import pytest

from realtime.activity import ARRIVALS
from realtime.brokers.base import MAX_MESSAGE_BYTES
from realtime.brokers.memory import MemoryBroker, MemoryBus
from realtime.engine.node import Node
from realtime.errors import BrokerError, FrameError
from realtime.presence.memory import MemoryPresence
from realtime.testing.waiting import wait_until_async
from realtime.wire.messages import (
    BROADCAST,
    PRESENCE,
    Broadcast,
    Kind,
    PresenceJoin,
    PresenceLeave,
    Subscribe,
    Unsubscribe,
)
from tests.engine.fakes import RecordingPeer

CHANNEL = "room"


class ForgetfulPresence(MemoryPresence):
    """The memory store, and a way to lose everything as a Redis that restarts empty does."""

    def forget(self) -> None:
        self._channels.clear()
        self._epoch = "after-restart"


def make_node(broadcasts: MemoryBroker, bus: MemoryBus, store: MemoryPresence) -> Node:
    """A node on ``bus``: ``broadcasts`` carries its broadcasts, a memory broker its presence."""
    return Node(
        broadcasts,
        MemoryBroker(bus),
        store,
        60,
        max_meta_bytes=2048,
        diff_window=0,
        order_wait=0,
        start_timeout=10,
        max_message_bytes=MAX_MESSAGE_BYTES,
    )


@pytest.fixture
async def node() -> AsyncIterator[Node]:
    bus = MemoryBus()  # this test's own: nothing else publishes on it
    # A TTL long enough that the refresh loop (every TTL/3) never runs within a test.
    node = make_node(MemoryBroker(bus), bus, ForgetfulPresence(ttl=60))
    await node.start()
    yield node
    await node.close()


def joined(peer: RecordingPeer) -> list[tuple[str, str, int]]:
    return [(f["type"], f["user_id"], f["seq"]) for f in peer.of("presence_join", "presence_leave")]


async def test_a_watcher_gets_its_sync_then_every_change_in_order(node: Node) -> None:
    watcher, alice, bob = RecordingPeer("w"), RecordingPeer("alice"), RecordingPeer("bob")
    for peer in (watcher, alice, bob):
        node.connect(peer)
    await node.handle(alice, PresenceJoin(channel=CHANNEL))
    await node.handle(watcher, Subscribe(channel=CHANNEL))
    await node.handle(bob, PresenceJoin(channel=CHANNEL))
    await node.handle(alice, PresenceLeave(channel=CHANNEL))
    await wait_until_async(lambda: len(watcher.frames) == 3, timeout=5)
    sync = watcher.frames[0]
    assert (sync["type"], sync["version"], [u["user_id"] for u in sync["users"]]) == (
        "presence_sync",
        1,
        ["alice"],
    )
    assert joined(watcher) == [("presence_join", "bob", 2), ("presence_leave", "alice", 3)]


async def test_broadcasts_reach_the_local_listeners_only(node: Node) -> None:
    sender, listener, deaf = RecordingPeer("s"), RecordingPeer("l"), RecordingPeer("d")
    for peer in (sender, listener, deaf):
        node.connect(peer)
    await node.handle(listener, Subscribe(channel=CHANNEL, listen=[BROADCAST]))
    await node.handle(deaf, Subscribe(channel=CHANNEL, listen=[PRESENCE]))
    payload = msgspec.Raw(b'{"n":1}')
    assert await node.handle(sender, Broadcast(channel=CHANNEL, event="e", payload=payload)) is None
    await wait_until_async(lambda: listener.of("broadcast"), timeout=5)
    (frame,) = listener.of("broadcast")
    assert (frame["event"], frame["payload"], frame["user_id"]) == ("e", {"n": 1}, "s")
    assert deaf.of("broadcast") == []


async def test_closing_a_connection_undoes_it(node: Node) -> None:
    watcher, alice = RecordingPeer("w"), RecordingPeer("alice")
    node.connect(watcher)
    node.connect(alice)
    await node.handle(watcher, Subscribe(channel=CHANNEL))
    await node.handle(alice, Subscribe(channel=CHANNEL))
    await node.handle(alice, PresenceJoin(channel=CHANNEL, payload={"x": 1}))
    await node.disconnect(alice)
    await node.disconnect(alice)  # twice is harmless
    assert node.connections == 1
    await wait_until_async(lambda: len(joined(watcher)) == 2, timeout=5)
    assert joined(watcher)[-1] == ("presence_leave", "alice", 2)
    await node.handle(watcher, Unsubscribe(channel=CHANNEL))
    assert node.hub.channels(BROADCAST) == node.hub.channels(PRESENCE) == 0


async def test_meta_over_the_limit_is_refused_and_stores_nothing(node: Node) -> None:
    peer = RecordingPeer()
    node.connect(peer)
    with pytest.raises(FrameError) as refused:
        await node.handle(peer, PresenceJoin(channel=CHANNEL, payload={"x": "y" * 3000}))
    assert refused.value.code == "meta_too_large"
    assert (await node.store.sync(CHANNEL)).members == []


async def test_a_store_that_lost_its_state_gets_our_members_back(node: Node) -> None:
    alice = RecordingPeer("alice")
    node.connect(alice)
    await node.handle(alice, PresenceJoin(channel=CHANNEL))
    store = node.store
    assert isinstance(store, ForgetfulPresence)
    store.forget()

    async def present() -> list[str]:
        return [member.user_id for member in (await store.sync(CHANNEL)).members]

    # The reaper sees the channel at version 0 while alice is here and re-asserts her.
    names: list[str] = await wait_until_async(present, timeout=5, message="alice re-asserted")
    assert names == ["alice"]


class GatedBroker(MemoryBroker):
    """A memory broker whose publishes to CHANNEL wait for ``gate``, then refuse when
    ``fail`` (the node's own probes pass)."""

    def __init__(self, bus: MemoryBus) -> None:
        super().__init__(bus)
        self.gate = asyncio.Event()
        self.waiting = 0
        self.fail = False

    async def publish(self, kind: Kind, channel: str, data: bytes) -> None:
        if channel == CHANNEL:
            self.waiting += 1
            try:
                await self.gate.wait()
            finally:
                self.waiting -= 1
            if self.fail:
                raise BrokerError("refused")
        await super().publish(kind, channel, data)


@pytest.mark.parametrize("fail", [False, True])
async def test_a_publish_counts_as_on_its_way_until_the_broker_answers(fail: bool) -> None:
    bus = MemoryBus()
    broker = GatedBroker(bus)
    broker.fail = fail
    node = make_node(broker, bus, MemoryPresence(ttl=60))
    await node.start()
    try:
        before = ARRIVALS.publishing
        publishing = asyncio.create_task(node.publish(CHANNEL, "e", msgspec.Raw(b"{}")))
        await wait_until_async(lambda: broker.waiting == 1, timeout=5)
        assert ARRIVALS.publishing == before + 1  # the write path may wait for its broadcast
        broker.gate.set()
        if fail:
            with pytest.raises(FrameError) as refused:
                await asyncio.wait_for(publishing, 5)
            assert refused.value.code == "publish_failed"
        else:
            await asyncio.wait_for(publishing, 5)
        assert ARRIVALS.publishing == before
    finally:
        await node.close()
