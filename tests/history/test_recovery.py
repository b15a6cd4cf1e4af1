"""Publishing on history channels and recovery on subscribe, through the node on the real
in-process broker and the memory history store."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import msgspec
import pytest

from realtime.brokers.base import MAX_MESSAGE_BYTES
from realtime.brokers.memory import MemoryBroker, MemoryBus
from realtime.engine.node import Node
from realtime.errors import FrameError, HistoryError
from realtime.history.base import History, Page, Position
from realtime.history.channels import HistoryChannels
from realtime.history.memory import MemoryHistory
from realtime.presence.memory import MemoryPresence
from realtime.testing.waiting import wait_until_async
from realtime.wire.messages import BROADCAST, Broadcast, Since, Subscribe, Unsubscribe
from tests.engine.fakes import RecordingPeer

CHANNEL = "orders.1"
PLAIN = "lobby"


class HookedHistory(MemoryHistory):
    """The memory store, with a hook run inside a replay's read (before it answers), and a switch
    that makes appends fail as a Redis that went away does."""

    def __init__(self, size: int) -> None:
        super().__init__(size, 300)
        self.during_read: Callable[[], Awaitable[None]] | None = None
        self.broken = False

    async def read(self, channel: str, after: int, limit: int) -> Page:
        # Only reads of entries (a replay's), not of the position alone (limit 0).
        if self.during_read is not None and limit > 0:
            hook, self.during_read = self.during_read, None
            await hook()
        return await super().read(channel, after, limit)

    async def append(self, channel: str, body: bytes) -> tuple[Position, bytes]:
        if self.broken:
            raise HistoryError("history append failed: ConnectionError")
        return await super().append(channel, body)


@pytest.fixture
async def node() -> AsyncIterator[Node]:
    bus = MemoryBus()
    store = HookedHistory(size=5)
    node = Node(
        MemoryBroker(bus),
        MemoryBroker(bus),
        MemoryPresence(ttl=60),
        60,
        max_meta_bytes=2048,
        diff_window=0,
        order_wait=0,
        start_timeout=10,
        max_message_bytes=MAX_MESSAGE_BYTES,
        history=History(HistoryChannels(("orders.*",)), store, 5),
    )
    await node.start()
    yield node
    await node.close()


def store_of(node: Node) -> HookedHistory:
    assert node.history is not None and isinstance(node.history.store, HookedHistory)
    return node.history.store


async def publish(node: Node, n: int, channel: str = CHANNEL) -> Position | None:
    return await node.publish(channel, "e", msgspec.Raw(b'{"n":%d}' % n))


def numbers(peer: RecordingPeer) -> list[int]:
    return [f["payload"]["n"] for f in peer.of("broadcast")]


def offsets(peer: RecordingPeer) -> list[int]:
    return [f["offset"] for f in peer.of("broadcast")]


async def test_a_history_broadcast_is_stored_first_and_carries_its_place(node: Node) -> None:
    sender, listener = RecordingPeer("s"), RecordingPeer("l")
    node.connect(sender)
    node.connect(listener)
    await node.handle(listener, Subscribe(channel=CHANNEL, listen=[BROADCAST]))
    stored = await node.handle(sender, Broadcast(channel=CHANNEL, payload=msgspec.Raw(b"1")))
    assert stored is not None and stored.done()
    position = stored.result()
    assert isinstance(position, Position) and position.offset == 1
    await wait_until_async(lambda: listener.of("broadcast"), timeout=5)
    (frame,) = listener.of("broadcast")
    assert (frame["offset"], frame["epoch"]) == position
    page = await store_of(node).read(CHANNEL, 0, 10)
    assert [o for o, _ in page.entries] == [1]


async def test_a_channel_without_history_is_unchanged(node: Node) -> None:
    sender, listener = RecordingPeer("s"), RecordingPeer("l")
    node.connect(sender)
    node.connect(listener)
    await node.handle(listener, Subscribe(channel=PLAIN, listen=[BROADCAST]))
    assert await publish(node, 1, PLAIN) is None
    result = await node.handle(sender, Broadcast(channel=PLAIN, payload=msgspec.Raw(b"2")))
    assert result is None
    await wait_until_async(lambda: len(listener.of("broadcast")) == 2, timeout=5)
    # The seed's fields, nothing more: a seed client sees no difference.
    assert all(
        set(f)
        == {"type", "channel", "event", "payload", "ts", *(["user_id"] if "user_id" in f else [])}
        for f in listener.frames
    )
    assert (await store_of(node).read(PLAIN, 0, 10)).entries == []


async def test_a_failed_store_refuses_the_publish_and_sends_nothing(node: Node) -> None:
    listener = RecordingPeer("l")
    node.connect(listener)
    await node.handle(listener, Subscribe(channel=CHANNEL, listen=[BROADCAST]))
    store_of(node).broken = True
    with pytest.raises(FrameError) as refused:
        await publish(node, 1)
    assert refused.value.code == "publish_failed"
    assert "ConnectionError" not in refused.value.message
    store_of(node).broken = False
    await publish(node, 2)
    await wait_until_async(lambda: listener.of("broadcast"), timeout=5)
    assert numbers(listener) == [2]


async def test_since_replays_what_was_missed_then_continues_live(node: Node) -> None:
    first = await publish(node, 1)
    assert first is not None
    for n in (2, 3):
        await publish(node, n)
    client = RecordingPeer("c")
    node.connect(client)
    await node.handle(
        client,
        Subscribe(channel=CHANNEL, listen=[BROADCAST], since=Since(first.offset, first.epoch)),
    )
    await publish(node, 4)
    await wait_until_async(lambda: len(client.of("broadcast")) == 3, timeout=5)
    assert client.frames[0] == {
        "type": "subscribed",
        "channel": CHANNEL,
        "offset": 3,
        "epoch": first.epoch,
        "recovered": True,
    }
    assert numbers(client) == [2, 3, 4] and offsets(client) == [2, 3, 4]


async def test_publications_during_the_read_arrive_once_in_order(node: Node) -> None:
    first = await publish(node, 1)
    assert first is not None
    await publish(node, 2)
    store = store_of(node)

    async def race() -> None:
        # Published after the live subscribe and before the read answers: delivered live
        # (held) and also in the replay; the client must get each once.
        await publish(node, 3)
        await wait_until_async(lambda: len(client_held()) == 1, timeout=5)

    def client_held() -> list[object]:
        follows = node._history.recoveries.on(CHANNEL) if node._history else None
        follow = (follows or {}).get(client)
        return list(follow.held or []) if follow is not None else []

    store.during_read = race
    client = RecordingPeer("c")
    node.connect(client)
    await node.handle(
        client,
        Subscribe(channel=CHANNEL, listen=[BROADCAST], since=Since(first.offset, first.epoch)),
    )
    await publish(node, 4)
    await wait_until_async(lambda: 4 in numbers(client), timeout=5)
    assert numbers(client) == [2, 3, 4]


async def test_another_epoch_is_not_recovered(node: Node) -> None:
    await publish(node, 1)
    client = RecordingPeer("c")
    node.connect(client)
    await node.handle(
        client, Subscribe(channel=CHANNEL, listen=[BROADCAST], since=Since(0, "gone"))
    )
    subscribed = client.frames[0]
    assert subscribed["recovered"] is False and subscribed["offset"] == 1
    assert client.of("broadcast") == []


async def test_history_trimmed_past_the_position_is_not_recovered(node: Node) -> None:
    first = await publish(node, 1)
    assert first is not None
    for n in range(2, 8):  # size 5: offsets 3..7 kept, 2 is gone
        await publish(node, n)
    client = RecordingPeer("c")
    node.connect(client)
    await node.handle(
        client, Subscribe(channel=CHANNEL, listen=[BROADCAST], since=Since(1, first.epoch))
    )
    assert client.frames[0]["recovered"] is False and client.frames[0]["offset"] == 7
    assert client.of("broadcast") == []
    # One step later it reaches: offsets 3..7.
    again = RecordingPeer("d")
    node.connect(again)
    await node.handle(
        again, Subscribe(channel=CHANNEL, listen=[BROADCAST], since=Since(2, first.epoch))
    )
    assert again.frames[0]["recovered"] is True
    assert numbers(again) == [3, 4, 5, 6, 7]


async def test_history_n_gives_the_last_n(node: Node) -> None:
    for n in range(1, 5):
        await publish(node, n)
    client = RecordingPeer("c")
    node.connect(client)
    await node.handle(client, Subscribe(channel=CHANNEL, listen=[BROADCAST], history=2))
    assert "recovered" not in client.frames[0] and client.frames[0]["offset"] == 4
    assert numbers(client) == [3, 4]
    position_only = RecordingPeer("p")
    node.connect(position_only)
    await node.handle(position_only, Subscribe(channel=CHANNEL, listen=[BROADCAST], history=0))
    assert position_only.frames == [
        {"type": "subscribed", "channel": CHANNEL, "offset": 4, "epoch": client.frames[0]["epoch"]}
    ]


async def test_a_position_before_the_first_publish_recovers(node: Node) -> None:
    client = RecordingPeer("c")
    node.connect(client)
    await node.handle(client, Subscribe(channel=CHANNEL, listen=[BROADCAST], history=0))
    start = client.frames[0]
    await node.handle(client, Unsubscribe(channel=CHANNEL))
    await publish(node, 1)
    await node.handle(
        client,
        Subscribe(channel=CHANNEL, listen=[BROADCAST], since=Since(0, start["epoch"])),
    )
    assert client.frames[1]["recovered"] is True
    assert numbers(client) == [1]


async def test_a_failed_read_keeps_the_live_subscription(node: Node) -> None:
    store = store_of(node)

    async def fail() -> None:
        raise HistoryError("read failed: ConnectionError")

    store.during_read = fail
    client = RecordingPeer("c")
    node.connect(client)
    with pytest.raises(FrameError) as refused:
        await node.handle(
            client, Subscribe(channel=CHANNEL, listen=[BROADCAST], since=Since(0, "e"))
        )
    assert refused.value.code == "history_unavailable"
    await publish(node, 1)
    await wait_until_async(lambda: client.of("broadcast"), timeout=5)
    assert numbers(client) == [1]
    await node.disconnect(client)
    assert node.hub.channels(BROADCAST) == 0
    assert node._history is not None and node._history.recoveries.on(CHANNEL) is None


async def test_unsubscribe_forgets_the_follow(node: Node) -> None:
    client = RecordingPeer("c")
    node.connect(client)
    await node.handle(client, Subscribe(channel=CHANNEL, listen=[BROADCAST], history=1))
    assert node._history is not None and node._history.recoveries.on(CHANNEL)
    await node.handle(client, Unsubscribe(channel=CHANNEL))
    assert node._history.recoveries.on(CHANNEL) is None


async def test_entries_missing_below_the_size_are_not_recovered(node: Node) -> None:
    first = await publish(node, 1)
    assert first is not None
    for n in (2, 3):
        await publish(node, n)
    # As a store that trims approximately or lost part of a stream: offset 2 is gone.
    stream = store_of(node)._streams[CHANNEL]
    stream.entries.popleft()
    stream.entries.popleft()
    client = RecordingPeer("c")
    node.connect(client)
    await node.handle(
        client, Subscribe(channel=CHANNEL, listen=[BROADCAST], since=Since(1, first.epoch))
    )
    assert client.frames[0]["recovered"] is False
    assert client.of("broadcast") == []
