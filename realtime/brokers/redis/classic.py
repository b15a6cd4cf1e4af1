"""Redis Pub/Sub broker on the seed's channel names (``broadcast.<c>``, ``presence.<c>``).

A seed gateway listens with ``PSUBSCRIBE broadcast.*``/``presence.*`` and so receives what we
publish; we SUBSCRIBE per channel, so an instance only receives channels it serves. When Redis
drops, the reader reconnects with capped backoff and resubscribes everything by itself.

On Sentinel the client asks the sentinels for the master on every new connection, so after a
failover the reader's reconnect lands on the new master. Redis Cluster has its own broker,
:mod:`realtime.brokers.redis.cluster`; :mod:`realtime.brokers.redis.factory` picks one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from realtime import metrics, redisconn
from realtime.brokers.redis.common import Confirmations, Publisher, backoff, hand_over, topic
from realtime.config import RedisDeployment
from realtime.wire.messages import Kind

if TYPE_CHECKING:
    from realtime.brokers.base import Deliver

log = logging.getLogger("realtime.broker.redis")


class RedisBroker:
    """Classic Pub/Sub on a standalone Redis, or on the master the sentinels name."""

    def __init__(self, url: str, *, deployment: RedisDeployment | None = None) -> None:
        self.deployment = deployment or RedisDeployment(url)
        assert not self.deployment.cluster, "Redis Cluster uses RedisClusterBroker"
        self.url = url
        self._client = self._connect()
        # The reader's own client retries nothing: redis-py would otherwise reconnect and
        # resubscribe inside get_message, unseen, so the drop would be neither logged nor counted.
        self._reader = self._connect(retry=Retry(NoBackoff(), 0))
        self._topics: set[str] = set()
        self._confirm = Confirmations()
        self._pubsub: Any = None
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._closed = False
        self._publisher = Publisher(self._send)
        # Classic Pub/Sub: the presence store's scripts may PUBLISH on this deployment.
        self.sharded = False

    def _connect(self, **options: Any) -> aioredis.Redis:
        if self.deployment.sentinels:
            return redisconn.sentinel_master(self.deployment, health_check_interval=15, **options)
        return redisconn.connect(self.url, health_check_interval=15, **options)

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    async def start(self, deliver: Deliver) -> None:
        self._task = asyncio.create_task(self._run(deliver), name="redis-broker")
        # Give the first connection a moment so a healthy start is ready at once; a Redis that
        # is down leaves us not-ready and retrying, it does not stop the gateway.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), timeout=5)

    async def publish(self, kind: Kind, channel: str, data: bytes) -> None:
        await self.publish_later(kind, channel, data)

    def publish_later(self, kind: Kind, channel: str, data: bytes) -> asyncio.Future[None]:
        return self._publisher.put(topic(kind, channel), data)

    async def _send(self, batch: list[tuple[str, bytes]]) -> None:
        if len(batch) == 1:
            await self._client.publish(*batch[0])
            return
        async with self._client.pipeline(transaction=False) as pipe:
            for name, data in batch:
                pipe.publish(name, data)
            await pipe.execute()

    async def subscribe(self, kind: Kind, channel: str) -> None:
        name = topic(kind, channel)
        self._topics.add(name)
        await self._change("subscribe", name)

    async def unsubscribe(self, kind: Kind, channel: str) -> None:
        name = topic(kind, channel)
        self._topics.discard(name)
        await self._change("unsubscribe", name)

    async def _change(self, action: str, name: str) -> None:
        pubsub = self._pubsub
        if pubsub is None or not self.ready:
            return  # the reader subscribes the whole set when it (re)connects
        send = getattr(pubsub, action)(name)
        await self._confirm.request(name, send, action, wait=action == "subscribe")

    async def _run(self, deliver: Deliver) -> None:
        failures = 0
        while True:
            pubsub = self._reader.pubsub()
            try:
                # A private topic keeps the connection open while no channel is subscribed.
                await pubsub.subscribe(f"__realtime__.{id(self)}", *self._topics)
                self._pubsub = pubsub
                self._ready.set()
                if failures:
                    metrics.broker_reconnected("redis")
                    log.info(
                        "redis subscriber reconnected", extra={"redis": self.deployment.display}
                    )
                failures = 0
                while True:
                    message = await pubsub.get_message(timeout=5.0)
                    if message is None:
                        continue
                    if message["type"] == "message":
                        name = message["channel"]
                        name = name.decode() if isinstance(name, bytes) else name
                        await hand_over(deliver, name, message["data"])
                    elif message["type"] == "subscribe":
                        self._confirm.confirmed(message["channel"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                wait = backoff(failures)
                failures += 1
                log.warning("redis subscriber down, retrying in %.2fs: %s", wait, exc)
            finally:
                self._ready.clear()
                self._pubsub = None
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(wait)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._publisher.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._client.aclose()
        await self._reader.aclose()
