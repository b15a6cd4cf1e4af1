"""Redis Pub/Sub broker on the seed's channel names (``broadcast.<c>``, ``presence.<c>``).

A seed gateway listens with ``PSUBSCRIBE broadcast.*``/``presence.*`` and so receives what we
publish; we SUBSCRIBE per channel, so an instance only receives channels it serves. When Redis
drops, the reader reconnects with capped backoff and resubscribes everything by itself.

On Sentinel the client asks the sentinels for the master on every new connection, so after a
failover the reader's reconnect lands on the new master. Redis Cluster has its own broker,
:mod:`realtime.brokers.redis.cluster`; :meth:`RedisBroker.from_settings` picks it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from realtime import redisconn
from realtime.config import RedisDeployment, check_redis_url, redis_url_from_parts
from realtime.errors import BrokerError
from realtime.wire.messages import KINDS, Kind

if TYPE_CHECKING:
    from realtime.brokers.base import Deliver
    from realtime.brokers.redis.cluster import RedisClusterBroker
    from realtime.config import Settings

log = logging.getLogger("realtime.broker.redis")
BACKOFF_START = 0.1
BACKOFF_CAP = 5.0
CONFIRM_TIMEOUT = 5.0
PUBLISH_BATCH = 512


def topic(kind: Kind, channel: str) -> str:
    return f"{kind}.{channel}"


def split_topic(name: str) -> tuple[Kind, str] | None:
    kind, _, channel = name.partition(".")
    for known in KINDS:
        if kind == known and channel:
            return known, channel
    return None


def _settle(
    batch: list[tuple[str, bytes, asyncio.Future[None]]], error: BaseException | None
) -> None:
    for _, _, done in batch:
        if done.done():
            continue
        if error is None:
            done.set_result(None)
        else:
            done.set_exception(error)


class Confirmations:
    """Subscribes waiting for Redis to confirm them, so a publish made right after
    ``subscribe()`` returns is never missed. The reader calls :meth:`confirmed` on each
    subscribe reply."""

    def __init__(self) -> None:
        self._waiting: dict[str, list[asyncio.Future[None]]] = {}

    async def request(self, name: str, send: Awaitable[object], action: str, wait: bool) -> None:
        """Await ``send`` (the (un)subscribe command) and, with ``wait``, Redis's reply. A
        failure is logged, not raised: the reader resubscribes everything when it reconnects."""
        confirmed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if wait:
            self._waiting.setdefault(name, []).append(confirmed)
        try:
            await send
            if wait:
                await asyncio.wait_for(asyncio.shield(confirmed), CONFIRM_TIMEOUT)
        except (RedisError, TimeoutError) as exc:
            log.warning("redis %s failed: %s", action, exc, extra={"topic": name})
        finally:
            waiters = self._waiting.get(name, [])
            if confirmed in waiters:
                waiters.remove(confirmed)
                if not waiters:
                    del self._waiting[name]

    def confirmed(self, name: bytes | str) -> None:
        key = name.decode() if isinstance(name, bytes) else name
        for waiter in self._waiting.pop(key, []):
            if not waiter.done():
                waiter.set_result(None)


class RedisBroker:
    """Classic Pub/Sub on a standalone Redis, or on the master the sentinels name."""

    def __init__(self, url: str, *, deployment: RedisDeployment | None = None) -> None:
        self.deployment = deployment or RedisDeployment(url)
        assert not self.deployment.cluster, "Redis Cluster uses RedisClusterBroker"
        self.url = url
        self._client: aioredis.Redis
        if self.deployment.sentinels:
            self._client = redisconn.sentinel_master(self.deployment, health_check_interval=15)
        else:
            self._client = redisconn.connect(url, health_check_interval=15)
        self._topics: set[str] = set()
        self._confirm = Confirmations()
        self._pubsub: Any = None
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._closed = False
        self._outbox: collections.deque[tuple[str, bytes, asyncio.Future[None]]] = (
            collections.deque()
        )
        self._writer: asyncio.Task[None] | None = None

    @classmethod
    def for_deployment(cls, deployment: RedisDeployment) -> RedisBroker | RedisClusterBroker:
        """The broker for a standalone, Sentinel or Cluster deployment."""
        if deployment.cluster:
            from realtime.brokers.redis.cluster import RedisClusterBroker

            return RedisClusterBroker(deployment)
        return cls(deployment.url, deployment=deployment)

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisBroker | RedisClusterBroker:
        addr = settings.get("BROADCAST_MQ_ADDR")
        # Settings refuse BROADCAST_MQ_* beside Sentinel or Cluster: one deployment carries both.
        if addr is None or settings.redis.mode != "standalone":
            return cls.for_deployment(settings.redis)
        if "://" in addr:
            return cls(check_redis_url("BROADCAST_MQ_ADDR", addr))
        password = settings.get("BROADCAST_MQ_PASSWORD")
        return cls(
            redis_url_from_parts("BROADCAST_MQ", addr, password, settings.get("BROADCAST_MQ_DB"))
        )

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
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._closed:
            done.set_exception(BrokerError("redis broker is closed"))
            return done
        self._outbox.append((topic(kind, channel), data, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write(), name="redis-publisher")
        return done

    async def _write(self) -> None:
        # One writer: publishes leave in the order they were queued, and whatever queued up
        # during a round trip goes out together in the next one (one pipeline).
        outbox = self._outbox
        while outbox:
            batch = [outbox.popleft() for _ in range(min(len(outbox), PUBLISH_BATCH))]
            try:
                if len(batch) == 1:
                    await self._client.publish(batch[0][0], batch[0][1])
                else:
                    async with self._client.pipeline(transaction=False) as pipe:
                        for name, data, _ in batch:
                            pipe.publish(name, data)
                        await pipe.execute()
            except (RedisError, OSError) as exc:
                _settle(batch, BrokerError(f"redis publish failed: {exc}"))
            except asyncio.CancelledError:
                _settle(batch, BrokerError("redis broker is closed"))
                raise
            else:
                _settle(batch, None)

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
        backoff = BACKOFF_START
        while True:
            pubsub = self._client.pubsub()
            try:
                # A private topic keeps the connection open while no channel is subscribed.
                await pubsub.subscribe(f"__realtime__.{id(self)}", *self._topics)
                self._pubsub = pubsub
                self._ready.set()
                if backoff > BACKOFF_START:
                    log.info(
                        "redis subscriber reconnected", extra={"redis": self.deployment.display}
                    )
                backoff = BACKOFF_START
                while True:
                    message = await pubsub.get_message(timeout=5.0)
                    if message is None:
                        continue
                    if message["type"] == "message":
                        await self._deliver(deliver, message)
                    elif message["type"] == "subscribe":
                        self._confirm.confirmed(message["channel"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("redis subscriber down, retrying in %.1fs: %s", backoff, exc)
            finally:
                self._ready.clear()
                self._pubsub = None
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_CAP)

    async def _deliver(self, deliver: Deliver, message: dict[str, Any]) -> None:
        name = message["channel"]
        target = split_topic(name.decode() if isinstance(name, bytes) else name)
        if target is None:
            return
        try:
            await deliver(target[0], target[1], message["data"])
        except Exception:
            log.exception("deliver failed", extra={"topic": name})

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        _settle(list(self._outbox), BrokerError("redis broker is closed"))
        self._outbox.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._client.aclose()
