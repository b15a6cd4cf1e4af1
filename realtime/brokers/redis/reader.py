"""One subscriber connection to one cluster master, for :mod:`realtime.brokers.redis.cluster`.

A reader carries the channels of its master's slots (``SSUBSCRIBE``, or classic ``SUBSCRIBE``
on one node in classic mode), reconnects with capped backoff, and tells its owner when it goes
up or down and when the server dropped a channel because its slot migrated away.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from typing import TYPE_CHECKING, Any, Protocol

from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.exceptions import RedisError

from realtime import metrics, redisconn
from realtime.brokers.redis.common import Confirmations, backoff, hand_over

if TYPE_CHECKING:
    from realtime.brokers.base import Deliver
    from realtime.config import RedisDeployment

log = logging.getLogger("realtime.broker.redis")


class ReaderOwner(Protocol):
    """What a reader needs from the broker that owns it."""

    @property
    def deployment(self) -> RedisDeployment: ...

    @property
    def sharded(self) -> bool: ...

    def changed(self) -> None:
        """A reader went up or down."""

    def need_refresh(self) -> None:
        """The connection failed: the slot map may have changed."""

    def moved(self, name: str) -> None:
        """The server dropped ``name``: its slot left this node."""


class NodeReader:
    """One subscriber connection to one master, carrying the channels of its slots."""

    def __init__(self, broker: ReaderOwner, host: str, port: int, deliver: Deliver) -> None:
        self.broker = broker
        self.host, self.port = host, port
        self.topics: set[str] = set()
        self.up = False
        self._deliver = deliver
        self._pubsub: Any = None
        self._confirm = Confirmations()
        # Unsubscribes we sent and whose reply has not come yet; any other SUNSUBSCRIBE is the
        # server telling us the slot left this node.
        self._leaving: collections.Counter[str] = collections.Counter()
        self._sub, self._unsub = (
            ("ssubscribe", "sunsubscribe") if broker.sharded else ("subscribe", "unsubscribe")
        )
        self._task = asyncio.create_task(self._run(), name=f"redis-cluster-reader-{host}:{port}")

    async def subscribe(self, name: str, *, wait: bool) -> None:
        self.topics.add(name)
        pubsub = self._pubsub
        if pubsub is None or not self.up:
            return  # the reader subscribes all of self.topics when it (re)connects
        send = getattr(pubsub, self._sub)(name)
        await self._confirm.request(name, send, self._sub, wait=wait)

    async def unsubscribe(self, name: str) -> None:
        self.topics.discard(name)
        pubsub = self._pubsub
        if pubsub is None or not self.up:
            return
        self._leaving[name] += 1
        try:
            await getattr(pubsub, self._unsub)(name)
        except RedisError as exc:
            self._leaving[name] -= 1
            log.warning("redis %s failed: %s", self._unsub, exc, extra={"topic": name})

    def stop(self) -> None:
        self._task.cancel()

    async def wait_stopped(self) -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        failures = 0
        # No retries inside redis-py: this loop reconnects, re-reads the slot map and resubscribes.
        retry = Retry(NoBackoff(), 0)
        while True:
            client = redisconn.node(
                self.broker.deployment, self.host, self.port, retry=retry, health_check_interval=15
            )
            pubsub = client.pubsub()
            try:
                # A node-local classic channel keeps the connection subscribed, and so watched,
                # while this master owns none of our channels.
                await pubsub.subscribe(f"__realtime__.{id(self)}")
                self._leaving.clear()
                await self._resubscribe(pubsub)
                self._pubsub = pubsub
                self.up = True
                self.broker.changed()
                if failures:
                    metrics.broker_reconnected("redis")
                    log.info("redis cluster subscriber reconnected", extra={"node": self.name})
                failures = 0
                while True:
                    message = await pubsub.get_message(timeout=5.0)
                    if message is not None:
                        await self._handle(message)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                wait = backoff(failures)
                failures += 1
                log.warning(
                    "redis cluster subscriber to %s down, retrying in %.2fs: %s",
                    self.name,
                    wait,
                    exc,
                )
                self.broker.need_refresh()
            finally:
                self.up = False
                self._pubsub = None
                self.broker.changed()
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                with contextlib.suppress(Exception):
                    await client.aclose()
            await asyncio.sleep(wait)

    @property
    def name(self) -> str:
        return f"{self.host}:{self.port}"

    async def _resubscribe(self, pubsub: Any) -> None:
        if not self.broker.sharded:
            if self.topics:
                await pubsub.subscribe(*self.topics)
            return
        # One SSUBSCRIBE per slot: channels of different slots in one command are CROSSSLOT.
        by_slot: dict[int, list[str]] = collections.defaultdict(list)
        for name in self.topics:
            by_slot[key_slot(name.encode())].append(name)
        for names in by_slot.values():
            await pubsub.ssubscribe(*names)

    async def _handle(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        raw = message["channel"]
        name = raw.decode() if isinstance(raw, bytes) else str(raw)
        if kind in ("smessage", "message"):
            await hand_over(self._deliver, name, message["data"])
        elif kind == self._sub:
            self._confirm.confirmed(name)
        elif kind == self._unsub:
            if self._leaving[name] > 0:
                self._leaving[name] -= 1
            elif name in self.topics:
                # The server dropped it: its slot migrated. Re-place it with a fresh slot map.
                log.info("redis cluster slot moved", extra={"topic": name, "node": self.name})
                self.topics.discard(name)
                self.broker.moved(name)
