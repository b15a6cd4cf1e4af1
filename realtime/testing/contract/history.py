"""Contract cases with history on: what a broker must carry for a history channel's
subscribers to get every broadcast once, in offset order (docs/history.md, "live order").

Each case runs real gateway nodes (:class:`realtime.engine.node.Node`) over brokers from
``make_broker()``, sharing one history store as every instance shares the presence Redis (an
in-process store here: the broker is what is under test). Brokers may deliver two instances'
publishes in either order; the node puts them back in order and fills a gap from history, so
these cases prove that the broker's deliveries (byte-exact, at least once while up) are
enough for that.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import msgspec
import pytest
import pytest_asyncio

from realtime.brokers.base import MAX_MESSAGE_BYTES
from realtime.brokers.memory import MemoryBroker
from realtime.engine.node import Node
from realtime.history.base import History
from realtime.history.channels import HistoryChannels
from realtime.history.memory import MemoryHistory
from realtime.presence.memory import MemoryPresence
from realtime.testing.contract.base import ContractBase
from realtime.wire.frames import Outgoing
from realtime.wire.messages import BROADCAST, Subscribe, bus_broadcast


class Watcher:
    """A local subscriber that keeps every frame it is sent, decoded."""

    def __init__(self, user_id: str) -> None:
        self.user_id = user_id
        self.frames: list[dict[str, Any]] = []

    def send(self, frame: Outgoing) -> None:
        self.frames.append(msgspec.json.decode(frame.data))

    def offsets(self) -> list[int]:
        return [f["offset"] for f in self.frames if f["type"] == "broadcast"]

    def errors(self) -> list[dict[str, Any]]:
        return [f for f in self.frames if f["type"] == "error"]


NodeFactory = Callable[[], Awaitable[Node]]


class HistoryCases(ContractBase):
    #: How many broadcasts the history keeps in these cases.
    history_size = 1000

    @pytest_asyncio.fixture
    async def history_nodes(self) -> AsyncIterator[tuple[NodeFactory, MemoryHistory]]:
        """A factory of started gateway nodes over this broker, sharing one history store."""
        store = MemoryHistory(self.history_size, 300)
        made: list[Node] = []

        async def make() -> Node:
            node = Node(
                await self.make_broker(),
                MemoryBroker(),
                MemoryPresence(60),
                60,
                max_meta_bytes=2048,
                diff_window=0,
                order_wait=0,
                start_timeout=self.start_timeout,
                max_message_bytes=MAX_MESSAGE_BYTES,
                history=History(HistoryChannels(("*",)), store, self.history_size),
            )
            made.append(node)
            await node.start()
            await self._until(
                lambda: all(b.ready for b in node.brokers.values()), self.timeout, "node ready"
            )
            return node

        yield make, store
        for node in made:
            await node.close()

    async def _watch(self, node: Node, channel: str, user_id: str) -> Watcher:
        watcher = Watcher(user_id)
        node.connect(watcher)
        await node.handle(watcher, Subscribe(channel=channel, listen=[BROADCAST]))
        return watcher

    async def _stored_without_the_mq(self, store: MemoryHistory, channel: str, n: int) -> None:
        """A broadcast in history that no broker carried: as when the publishing instance's
        MQ publish failed after it was stored."""
        data = bus_broadcast(channel, "message", msgspec.Raw(b"%d" % n))
        await store.append(channel, data[:-1])

    @pytest.mark.asyncio
    async def test_history_concurrent_publishers_reach_subscribers_in_offset_order(
        self, history_nodes: tuple[NodeFactory, MemoryHistory], channel: str
    ) -> None:
        make, _ = history_nodes
        a, b = await make(), await make()
        watchers = [await self._watch(a, channel, "wa"), await self._watch(b, channel, "wb")]
        count, publishers = 200, 8

        async def publish(k: int) -> None:
            node = (a, b)[k % 2]  # half of the publishers on each instance, all at once
            for n in range(k, count, publishers):
                await node.publish(channel, "message", msgspec.Raw(b"%d" % n))

        await asyncio.gather(*(publish(k) for k in range(publishers)))
        await self._until(
            lambda: all(len(w.offsets()) >= count for w in watchers),
            self.timeout,
            "every broadcast",
        )
        for watcher in watchers:
            assert watcher.offsets() == list(range(1, count + 1)), (
                watcher.user_id,
                watcher.offsets(),
            )
            assert watcher.errors() == []

    @pytest.mark.asyncio
    async def test_history_a_gap_on_the_mq_is_filled_from_history(
        self, history_nodes: tuple[NodeFactory, MemoryHistory], channel: str
    ) -> None:
        make, store = history_nodes
        a, b = await make(), await make()
        watcher = await self._watch(b, channel, "w")
        await a.publish(channel, "message", msgspec.Raw(b"1"))
        await self._stored_without_the_mq(store, channel, 2)
        await a.publish(channel, "message", msgspec.Raw(b"3"))
        await self._until(lambda: len(watcher.offsets()) >= 3, self.timeout, "1, 2 and 3")
        assert watcher.offsets() == [1, 2, 3]
        payloads = [f["payload"] for f in watcher.frames if f["type"] == "broadcast"]
        assert payloads == [1, 2, 3] and watcher.errors() == []

    @pytest.mark.asyncio
    async def test_history_a_gap_history_lost_is_reported_then_order_goes_on(
        self, history_nodes: tuple[NodeFactory, MemoryHistory], channel: str
    ) -> None:
        make, store = history_nodes
        a, b = await make(), await make()
        watcher = await self._watch(b, channel, "w")
        await a.publish(channel, "message", msgspec.Raw(b"1"))
        # Offsets 2 .. size+2 never carried: the history keeps only the last `size` of them.
        for n in range(2, self.history_size + 3):
            await self._stored_without_the_mq(store, channel, n)
        last = self.history_size + 3
        await a.publish(channel, "message", msgspec.Raw(b"%d" % last))
        await self._until(lambda: watcher.offsets()[-1:] == [last], self.timeout, "the last")
        kept = list(range(last - self.history_size + 1, last + 1))
        assert watcher.offsets() == [1, *kept]
        (lost,) = watcher.errors()
        assert lost["code"] == "broadcasts_lost" and lost["channel"] == channel
        # The report comes where the lost ones would have been.
        assert watcher.frames.index(lost) == 1
