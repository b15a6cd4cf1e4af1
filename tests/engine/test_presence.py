"""The per-subscriber presence order, driven directly: no broker, no sockets.

The store's ``sync`` is a small fake here because these tests must hold it open, change its
answer between calls, or feed events with gaps and new epochs that a healthy store never makes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from realtime.engine import presence
from realtime.engine.presence import PresenceViews
from realtime.presence.base import ChannelState, Snapshot
from realtime.testing.waiting import wait_until_async
from realtime.wire.messages import Member
from tests.engine.fakes import RecordingPeer, event

CHANNEL = "room"


class Sync:
    """The store's sync: waits while ``gate`` is closed, then answers the first of ``answers``
    (the last one stays, so ``snapshot = ...`` sets the answer from then on)."""

    def __init__(self) -> None:
        self.answers = [Snapshot(0, "e1", [])]
        self.gate = asyncio.Event()
        self.gate.set()
        self.calls = 0

    @property
    def snapshot(self) -> Snapshot:
        return self.answers[0]

    @snapshot.setter
    def snapshot(self, snapshot: Snapshot) -> None:
        self.answers = [snapshot]

    async def __call__(self, channel: str) -> Snapshot:
        assert channel == CHANNEL
        self.calls += 1
        await self.gate.wait()
        return self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]


class Room:
    """One channel's local subscribers and the views kept for them."""

    def __init__(self, diff_window: float = 0.0, order_wait: float = 0.0) -> None:
        self.sync = Sync()
        self.peers: set[RecordingPeer] = set()
        self.reasserted: list[str] = []
        self.views = PresenceViews(
            self.sync, lambda channel: self.peers, self.reasserted.append, diff_window, order_wait
        )

    async def subscribe(self, peer: RecordingPeer, diff: bool = False, chunk: int = 0) -> None:
        ticket = self.views.hold(peer, CHANNEL, diff, chunk)
        self.peers.add(peer)  # as the hub registers it before the node reads the sync
        await self.views.first_sync(ticket)

    def deliver(self, *seqs: int, epoch: str = "e1", kind: str = "presence_join") -> None:
        for seq in seqs:
            self.views.deliver(CHANNEL, event(CHANNEL, seq, f"u{seq}", kind, epoch), self.peers)


@pytest.fixture
async def room() -> AsyncIterator[Room]:
    room = Room()
    yield room
    await room.views.close()


def members(count: int) -> list[Member]:
    return [Member(f"m{i}") for i in range(count)]


async def test_events_after_the_sync_follow_it_in_order(room: Room) -> None:
    peer = RecordingPeer()
    room.sync.snapshot = Snapshot(2, "e1", members(2))
    await room.subscribe(peer)
    room.deliver(1, 2, 3, 4)  # 1 and 2 are in the sync already
    room.deliver(4)  # a duplicate
    assert peer.trace() == [("presence_sync", 2), ("presence_join", 3), ("presence_join", 4)]


async def test_events_during_the_sync_are_held_and_sent_once(room: Room) -> None:
    peer = RecordingPeer()
    room.sync.gate.clear()
    subscribing = asyncio.create_task(room.subscribe(peer))
    await wait_until_async(lambda: room.sync.calls == 1, timeout=5)
    room.deliver(1, 2, 3)
    room.sync.snapshot = Snapshot(2, "e1", members(2))  # read after event 2
    assert peer.frames == []  # nothing before the sync
    room.sync.gate.set()
    await asyncio.wait_for(subscribing, 5)
    room.deliver(3, 4)
    assert peer.trace() == [("presence_sync", 2), ("presence_join", 3), ("presence_join", 4)]


async def test_a_gap_in_seq_resyncs(room: Room) -> None:
    peer = RecordingPeer()
    await room.subscribe(peer)
    room.deliver(1)
    room.sync.snapshot = Snapshot(3, "e1", members(3))
    room.deliver(3)  # 2 was lost
    await wait_until_async(lambda: len(peer.of("presence_sync")) == 2, timeout=5)
    room.deliver(4)
    assert peer.trace() == [
        ("presence_sync", 0),
        ("presence_join", 1),
        ("presence_sync", 3),
        ("presence_join", 4),
    ]


async def test_a_new_epoch_resyncs_and_reasserts(room: Room) -> None:
    peer = RecordingPeer()
    room.sync.snapshot = Snapshot(5, "e1", members(5))
    await room.subscribe(peer)
    # The store came back empty: it numbers from 1 again under a new epoch.
    room.sync.snapshot = Snapshot(1, "e2", members(1))
    room.deliver(1, epoch="e2")
    assert room.reasserted == [CHANNEL]
    await wait_until_async(lambda: len(peer.of("presence_sync")) == 2, timeout=5)
    room.deliver(2, epoch="e2")
    assert peer.trace() == [("presence_sync", 5), ("presence_sync", 1), ("presence_join", 2)]


async def test_the_first_event_of_a_channel_starts_its_epoch(room: Room) -> None:
    peer = RecordingPeer()
    room.sync.snapshot = Snapshot(0, "", [])  # a channel the store never saw has no epoch yet
    await room.subscribe(peer)
    room.deliver(1, 2, epoch="e7")
    assert peer.trace() == [("presence_sync", 0), ("presence_join", 1), ("presence_join", 2)]
    assert room.reasserted == []


async def test_diffs_fold_a_window_of_events_into_one_frame() -> None:
    room = Room(diff_window=0.05)
    peer = RecordingPeer()
    await room.subscribe(peer, diff=True)
    room.deliver(1, 2)
    room.views.deliver(CHANNEL, event(CHANNEL, 3, "u1", "presence_leave"), room.peers)
    assert peer.trace() == [("presence_sync", 0)]  # held until the window ends
    await wait_until_async(lambda: len(peer.frames) == 2, timeout=5)
    room.deliver(4)
    await wait_until_async(lambda: len(peer.frames) == 3, timeout=5)
    first, second = peer.of("presence_diff")
    assert (first["from_seq"], first["seq"], first["leaves"]) == (1, 3, ["u1"])
    assert [m["user_id"] for m in first["joins"]] == ["u2"]
    assert (second["from_seq"], second["seq"], second["leaves"]) == (4, 4, [])
    await room.views.close()


async def test_a_resync_flushes_the_open_diff_first() -> None:
    room = Room(diff_window=60)  # the window would not end within the test
    peer = RecordingPeer()
    await room.subscribe(peer, diff=True)
    room.deliver(1, 2)
    room.sync.snapshot = Snapshot(4, "e1", members(4))
    room.deliver(4)  # a gap: the diff so far goes out before the fresh sync
    await wait_until_async(lambda: len(peer.of("presence_sync")) == 2, timeout=5)
    assert peer.trace() == [("presence_sync", 0), ("presence_diff", 2), ("presence_sync", 4)]
    await room.views.close()


async def test_a_big_sync_goes_in_chunks_of_one_version(room: Room) -> None:
    peer = RecordingPeer()
    room.sync.snapshot = Snapshot(9, "e1", members(5))
    await room.subscribe(peer, chunk=2)
    syncs = peer.of("presence_sync")
    assert [(s["chunk"], s["chunks"], len(s["users"])) for s in syncs] == [
        (1, 3, 2),
        (2, 3, 2),
        (3, 3, 1),
    ]
    assert {s["version"] for s in syncs} == {9}
    assert [u["user_id"] for s in syncs for u in s["users"]] == [f"m{i}" for i in range(5)]
    small = RecordingPeer("small")
    await room.subscribe(small, chunk=5)  # fits in one frame: no chunk numbers
    assert [("chunk" in s, len(s["users"])) for s in small.frames] == [(False, 5)]


async def test_too_many_held_events_resync(room: Room, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(presence, "PENDING_LIMIT", 3)
    peer = RecordingPeer()
    room.sync.gate.clear()
    subscribing = asyncio.create_task(room.subscribe(peer))
    await wait_until_async(lambda: room.sync.calls == 1, timeout=5)
    room.deliver(1, 2, 3, 4, 5)  # 1..3 are dropped to make room
    room.sync.answers = [Snapshot(3, "e1", members(3)), Snapshot(5, "e1", members(5))]
    room.sync.gate.set()
    await asyncio.wait_for(subscribing, 5)
    # 4 and 5 follow the sync on, but events were dropped: the view is synced again.
    await wait_until_async(lambda: len(peer.of("presence_sync")) == 2, timeout=5)
    assert peer.trace() == [
        ("presence_sync", 3),
        ("presence_join", 4),
        ("presence_join", 5),
        ("presence_sync", 5),
    ]


async def test_a_resync_asked_during_another_is_not_lost(room: Room) -> None:
    first, second = RecordingPeer("first"), RecordingPeer("second")
    await room.subscribe(first)
    await room.subscribe(second)
    room.sync.gate.clear()
    room.sync.snapshot = Snapshot(2, "e1", members(2))
    room.views.deliver(CHANNEL, event(CHANNEL, 2, "u2"), {first})  # first has a gap
    await wait_until_async(lambda: room.sync.calls == 3, timeout=5)
    # While first's resync reads the store, second finds a gap too.
    room.views.deliver(CHANNEL, event(CHANNEL, 3, "u3"), {second})
    room.sync.gate.set()
    await wait_until_async(lambda: len(second.of("presence_sync")) == 2, timeout=5)
    assert room.sync.calls == 4  # first's sync was read before second asked: not enough
    assert first.trace() == [("presence_sync", 0), ("presence_sync", 2)]
    assert second.trace() == [("presence_sync", 0), ("presence_sync", 2), ("presence_join", 3)]


async def test_the_reaper_resyncs_a_view_left_behind(room: Room) -> None:
    peer = RecordingPeer()
    await room.subscribe(peer)
    room.deliver(1)
    room.views.check(CHANNEL, ChannelState(1, "e1"))  # up to date: nothing to do
    assert room.sync.calls == 1
    room.sync.snapshot = Snapshot(2, "e1", members(2))
    room.views.check(CHANNEL, ChannelState(2, "e1"))  # event 2 never came
    await wait_until_async(lambda: len(peer.of("presence_sync")) == 2, timeout=5)
    assert peer.trace() == [("presence_sync", 0), ("presence_join", 1), ("presence_sync", 2)]


async def test_an_unsubscribed_peer_gets_nothing_more(room: Room) -> None:
    peer = RecordingPeer()
    await room.subscribe(peer, diff=True)
    room.views.drop(peer, CHANNEL)
    assert room.views.channels() == set()
    room.deliver(1)  # still local upstream (as during a disconnect): sent as it is, unordered
    assert peer.trace() == [("presence_sync", 0), ("presence_join", 1)]


# --- events that cross on the way (racing instances on sharded Pub/Sub) -------------------------


async def test_crossed_events_wait_for_the_missing_one_and_pass_in_order() -> None:
    room = Room(order_wait=60)  # the wait would not end within the test
    peer, diff = RecordingPeer(), RecordingPeer("diff")
    await room.subscribe(peer)
    await room.subscribe(diff, diff=True)
    room.deliver(3, 2)  # ahead of 1: held, not a gap yet
    assert peer.trace() == [("presence_sync", 0)]
    room.deliver(1, 4)
    assert peer.trace() == [("presence_sync", 0), *(("presence_join", n) for n in (1, 2, 3, 4))]
    assert diff.trace() == [("presence_sync", 0), *(("presence_diff", n) for n in (1, 2, 3, 4))]
    # Each subscriber put 2 and 3 back in order.
    assert (room.views.resyncs, room.views.reordered, room.sync.calls) == (0, 4, 2)
    await room.views.close()


async def test_a_gap_still_open_after_the_wait_resyncs_once_counted() -> None:
    room = Room(order_wait=0.05)
    peer = RecordingPeer()
    await room.subscribe(peer)
    room.deliver(1)
    room.sync.snapshot = Snapshot(3, "e1", members(3))
    room.deliver(3)  # 2 was lost
    assert peer.trace() == [("presence_sync", 0), ("presence_join", 1)]
    await wait_until_async(lambda: len(peer.of("presence_sync")) == 2, timeout=5)
    room.deliver(2, 4)  # 2 is in the fresh sync already
    assert peer.trace() == [
        ("presence_sync", 0),
        ("presence_join", 1),
        ("presence_sync", 3),
        ("presence_join", 4),
    ]
    assert (room.views.resyncs, room.views.reordered) == (1, 0)
    await room.views.close()


async def test_each_subscriber_gets_its_whole_wait() -> None:
    wait = 1.0
    room = Room(order_wait=wait)
    early, late = RecordingPeer("early"), RecordingPeer("late")
    await room.subscribe(early)
    room.sync.snapshot = Snapshot(2, "e1", members(2))
    await room.subscribe(late)
    room.deliver(2)  # early waits for 1 from now on; late has 2 in its sync
    started = asyncio.get_running_loop().time()
    await wait_until_async(
        lambda: asyncio.get_running_loop().time() - started >= wait / 2, timeout=5, interval=0.01
    )
    room.sync.snapshot = Snapshot(4, "e1", members(4))
    room.deliver(4)  # late waits for 3 from now on, on the channel's one timer
    await wait_until_async(lambda: len(early.of("presence_sync")) == 2, timeout=5)
    room.deliver(3)  # within late's own wait: no resync for it
    assert early.trace() == [("presence_sync", 0), ("presence_sync", 4)]
    assert late.trace() == [("presence_sync", 2), ("presence_join", 3), ("presence_join", 4)]
    assert room.views.resyncs == 1
    await room.views.close()


async def test_too_many_events_ahead_resync_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(presence, "AHEAD_LIMIT", 2)
    room = Room(order_wait=60)
    peer = RecordingPeer()
    await room.subscribe(peer)
    room.sync.snapshot = Snapshot(5, "e1", members(5))
    room.deliver(2, 3, 4)
    await wait_until_async(lambda: len(peer.of("presence_sync")) == 2, timeout=5)
    assert peer.trace() == [("presence_sync", 0), ("presence_sync", 5)]
    await room.views.close()


async def test_crossed_events_held_during_the_sync_pass_in_order() -> None:
    room = Room(order_wait=60)
    peer = RecordingPeer()
    room.sync.gate.clear()
    subscribing = asyncio.create_task(room.subscribe(peer))
    await wait_until_async(lambda: room.sync.calls == 1, timeout=5)
    room.deliver(3, 2, 1)  # crossed on the way, while the sync is read (at version 1)
    room.sync.snapshot = Snapshot(1, "e1", members(1))
    room.sync.gate.set()
    await asyncio.wait_for(subscribing, 5)
    assert peer.trace() == [("presence_sync", 1), ("presence_join", 2), ("presence_join", 3)]
    assert (room.views.resyncs, room.sync.calls) == (0, 1)
    await room.views.close()
