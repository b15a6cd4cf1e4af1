"""Redis Cluster broker: sharded Pub/Sub on the seed's channel names.

Classic Pub/Sub on a cluster copies every message to every node over the cluster bus, so its
throughput does not grow with shards. Sharded Pub/Sub (Redis >= 7) keeps a channel on the
node owning its slot: ``SPUBLISH`` goes there and only there, and each instance holds one
subscriber connection per master, carrying ``SSUBSCRIBE`` for the channels that master owns.

A seed gateway on a cluster publishes and listens with classic ``PUBLISH``/``PSUBSCRIBE``,
which sharded Pub/Sub does not see; ``REDIS_CLUSTER_PUBSUB=classic`` makes this broker use
classic Pub/Sub (one subscriber connection) for such mixed fleets. See docs/deployment.md.

Publishes are pipelined as on the classic broker (the shared ``Publisher``): what queues up
during a round trip goes out in one cluster pipeline, which redis-py splits per node.

Each master's subscriber connection is a :class:`~realtime.brokers.redis.reader.NodeReader`.
When a node drops, a slot moves (``MOVED``, or the server's own ``SUNSUBSCRIBE`` when a slot
migrates away) or the topology changes, the broker reloads the slot map, moves each channel to
its owner and resubscribes; it is not ready while any master's connection is down.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.exceptions import RedisClusterException, RedisError

from realtime import redisconn
from realtime.brokers.redis.common import Publisher, backoff, topic
from realtime.brokers.redis.reader import NodeReader
from realtime.config import RedisDeployment
from realtime.wire.messages import Kind

if TYPE_CHECKING:
    from realtime.brokers.base import Deliver

log = logging.getLogger("realtime.broker.redis")
# Topology reloads are debounced: a node that keeps failing must not hammer the others.
REFRESH_INTERVAL = 0.5
MAX_SLOT = 16383


class RedisClusterBroker:
    def __init__(self, deployment: RedisDeployment) -> None:
        assert deployment.cluster, "a cluster deployment"
        self.deployment = deployment
        self.url = deployment.url
        self.sharded = deployment.cluster_pubsub == "sharded"
        self._cluster = redisconn.cluster(deployment)
        self._topics: set[str] = set()
        self._owner: dict[str, str] = {}  # topic -> name of the node whose reader carries it
        self._readers: dict[str, NodeReader] = {}
        self._deliver: Deliver | None = None
        self._refresh = asyncio.Event()
        self._changed = asyncio.Event()
        self._background: set[asyncio.Task[None]] = set()
        # The slot map, sorted by first slot: (first, last, "host:port" of its master). Read
        # with CLUSTER SLOTS on our own short-lived connections, so that reloading it never
        # races the cluster client's own topology handling.
        self._slots: list[tuple[int, int, str]] = []
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._publisher = Publisher(self._send)

    @property
    def ready(self) -> bool:
        readers = self._readers.values()
        return (
            bool(self._slots)
            and bool(readers)
            and all(reader.up for reader in readers)
            and all(name in self._owner for name in self._topics)
        )

    async def start(self, deliver: Deliver) -> None:
        self._deliver = deliver
        self._task = asyncio.create_task(self._run(), name="redis-cluster-broker")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._until_ready(), timeout=5)

    async def _until_ready(self) -> None:
        while not self.ready:
            self._changed.clear()
            await self._changed.wait()

    def changed(self) -> None:
        """A reader went up or down, or the slot map was reloaded."""
        self._changed.set()

    async def publish(self, kind: Kind, channel: str, data: bytes) -> None:
        await self.publish_later(kind, channel, data)

    def publish_later(self, kind: Kind, channel: str, data: bytes) -> asyncio.Future[None]:
        return self._publisher.put(topic(kind, channel), data)

    async def _send(self, batch: list[tuple[str, bytes]]) -> None:
        # redis-py's cluster pipeline (no transaction) routes each SPUBLISH by its channel's
        # slot and sends one pipeline per node, concurrently, each in queue order; a MOVED
        # command is retried on its new owner. A channel's topic lives in one slot, so its
        # publishes keep their order. Classic PUBLISH has no slot: redis-py would pick a random
        # master per command (and refuses PUBLISH in a pipeline), so we pin it to the client's
        # default node, whose cluster bus then relays one publisher's messages in order.
        if len(batch) == 1:
            args, options = self._command(*batch[0])
            await self._cluster.execute_command(*args, **options)
            return
        async with self._cluster.pipeline(transaction=False) as pipe:
            for name, data in batch:
                args, options = self._command(name, data)
                pipe.execute_command(*args, **options)
            await pipe.execute()

    def _command(self, name: str, data: bytes) -> tuple[tuple[str, str, bytes], dict[str, Any]]:
        if self.sharded:
            return ("SPUBLISH", name, data), {}
        return ("PUBLISH", name, data), {"target_nodes": RedisCluster.DEFAULT_NODE}

    async def subscribe(self, kind: Kind, channel: str) -> None:
        name = topic(kind, channel)
        self._topics.add(name)
        reader = self._place(name)
        if reader is not None:
            await reader.subscribe(name, wait=True)

    async def unsubscribe(self, kind: Kind, channel: str) -> None:
        name = topic(kind, channel)
        self._topics.discard(name)
        owner = self._owner.pop(name, None)
        reader = self._readers.get(owner) if owner else None
        if reader is not None:
            await reader.unsubscribe(name)

    def need_refresh(self) -> None:
        self._refresh.set()

    def moved(self, name: str) -> None:
        """A reader's server dropped ``name``: forget where it was and re-place it."""
        self._owner.pop(name, None)
        self._refresh.set()

    # --- placement ----------------------------------------------------------------------------

    def _node_for(self, name: str) -> str | None:
        if not self._slots:
            return None
        if not self.sharded:
            # Classic Pub/Sub reaches every node: one connection, to the first master, will do.
            return min(self._readers, default=None)
        slot = key_slot(name.encode())
        index = bisect.bisect_right(self._slots, (slot, MAX_SLOT, "\uffff")) - 1
        if index >= 0 and self._slots[index][0] <= slot <= self._slots[index][1]:
            return self._slots[index][2]
        return None  # an uncovered slot: the cluster is down for it

    def _place(self, name: str) -> NodeReader | None:
        """Record which reader carries ``name``; None until the slot map is known (the
        supervisor places everything once it is)."""
        target = self._node_for(name)
        if target is None or target not in self._readers:
            return None
        previous = self._owner.get(name)
        if previous is not None and previous != target and previous in self._readers:
            old = self._readers[previous]
            # Sharded: the server dropped it from the old owner when the slot moved. Classic:
            # the old connection would still receive it, so unsubscribe there, in the background.
            task = asyncio.create_task(old.unsubscribe(name))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        self._owner[name] = target
        return self._readers[target]

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                self._slots = await self._load_slots()
                self._sync_readers()
                self.changed()
                for name in list(self._topics):
                    before = self._owner.get(name)
                    reader = self._place(name)
                    if reader is not None and (
                        before != self._owner[name] or name not in reader.topics
                    ):
                        await reader.subscribe(name, wait=False)
                # A MOVED while subscribing lands the reader in its reconnect loop, which
                # asks for another refresh; anything placed meanwhile is carried over.
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                wait = backoff(failures)
                failures += 1
                log.warning("redis cluster slot map unavailable, retrying in %.2fs: %s", wait, exc)
                await asyncio.sleep(wait)
                continue
            await self._refresh.wait()
            await asyncio.sleep(REFRESH_INTERVAL)
            self._refresh.clear()

    async def _load_slots(self) -> list[tuple[int, int, str]]:
        """CLUSTER SLOTS from the first node that answers: known masters, then the start node."""
        start = urlsplit(self.deployment.url)
        candidates = [*self._readers, f"{start.hostname or '127.0.0.1'}:{start.port or 6379}"]
        failure: Exception = RedisClusterException("no cluster node to ask")
        for name in dict.fromkeys(candidates):
            host, _, port = name.rpartition(":")
            client = redisconn.node(
                self.deployment, host, int(port), retry=Retry(NoBackoff(), 0), socket_timeout=5
            )
            try:
                reply = await client.execute_command("CLUSTER", "SLOTS")  # type: ignore[no-untyped-call]
            except RedisError as exc:
                failure = exc
                continue
            finally:
                await client.aclose()
            slots = []
            for first, last, master, *_ in reply:
                master_host = master[0].decode() if isinstance(master[0], bytes) else master[0]
                # A one-node cluster answers with an empty host: the one we asked.
                slots.append((int(first), int(last), f"{master_host or host}:{int(master[1])}"))
            if slots:
                return sorted(slots)
        raise failure

    def _sync_readers(self) -> None:
        """One reader per master; readers of nodes no longer masters are stopped."""
        assert self._deliver is not None
        masters = {name for _, _, name in self._slots}
        for name in list(self._readers):
            if name not in masters:
                reader = self._readers.pop(name)
                reader.stop()
                for moved in reader.topics:
                    self._owner.pop(moved, None)
        for name in masters:
            if name not in self._readers:
                host, _, port = name.rpartition(":")
                self._readers[name] = NodeReader(self, host, int(port), self._deliver)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._publisher.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        readers, self._readers = list(self._readers.values()), {}
        for reader in readers:
            reader.stop()
        for reader in readers:
            await reader.wait_stopped()
        for task in list(self._background):
            task.cancel()
        await self._cluster.aclose()
