"""What the classic and the cluster Redis brokers share: topic names, subscribe confirmations,
backoff, and the pipelined publisher.

Topics are the seed's channel names, ``broadcast.<channel>`` and ``presence.<channel>``; the
presence store's scripts publish on the same names, through :func:`topic`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from redis.backoff import EqualJitterBackoff
from redis.exceptions import RedisClusterException, RedisError

from realtime import redisconn
from realtime.errors import BrokerError
from realtime.wire.messages import KINDS, RESERVED_PREFIX, Kind

if TYPE_CHECKING:
    from realtime.brokers.base import Deliver

log = logging.getLogger("realtime.broker.redis")
# A subscriber's reconnect waits, jittered so instances do not reconnect in step: 50-100 ms
# first, doubling to a cap of 0.5-1 s. Low, because every second the subscriber is down is a
# second of broadcasts this instance never delivers (a 5 s cap once cost 75 messages).
BACKOFF_START = 0.1
BACKOFF_CAP = 1.0
_BACKOFF = EqualJitterBackoff(cap=BACKOFF_CAP, base=BACKOFF_START)


def backoff(failures: int) -> float:
    """Seconds to wait before reconnect attempt ``failures + 1`` (0: the first)."""
    return _BACKOFF.compute(failures)


CONFIRM_TIMEOUT = 5.0
PUBLISH_BATCH = 512
#: Seconds from a publish being asked to its answer, at most: Redis's own command timeout, so
#: a healthy Redis never reaches it and a frozen one fails each publish once, not once per
#: batch queued ahead of it.
PUBLISH_DEADLINE = redisconn.COMMAND_TIMEOUT


def _late(deadline: float) -> str:
    return f"redis publish failed: no answer within {deadline:g}s"


#: One round trip carrying a batch of (topic, data) publishes, in order.
Send = Callable[[list[tuple[str, bytes]]], Awaitable[object]]


def topic(kind: Kind, channel: str) -> str:
    if channel.startswith(RESERVED_PREFIX):
        # The gateway's own channels (liveness probes) stay outside `broadcast.*` and
        # `presence.*`, which seed gateways PSUBSCRIBE: they never see a probe.
        return f"{channel}.{kind}"
    return f"{kind}.{channel}"


def split_topic(name: str) -> tuple[Kind, str] | None:
    if name.startswith(RESERVED_PREFIX):
        channel, _, suffix = name.rpartition(".")
        for known in KINDS:
            if suffix == known and channel:
                return known, channel
        return None
    kind, _, channel = name.partition(".")
    for known in KINDS:
        if kind == known and channel:
            return known, channel
    return None


async def hand_over(deliver: Deliver, name: str, data: bytes) -> None:
    """Pass one Pub/Sub message on; a failing ``deliver`` is logged, never ends the reader."""
    target = split_topic(name)
    if target is None:
        return  # not one of ours (the keep-alive topic, a foreign publisher's name)
    try:
        await deliver(target[0], target[1], data)
    except Exception:
        log.exception("deliver failed", extra={"topic": name})


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


#: A queued publish: topic, data, its answer, and the loop time it was asked.
Pending = tuple[str, bytes, asyncio.Future[None], float]


def _settle(batch: list[Pending], error: BaseException | None) -> None:
    for _, _, done, _ in batch:
        if done.done():
            continue
        if error is None:
            done.set_result(None)
        else:
            done.set_exception(error)


class Publisher:
    """Publishes queued in order and written by one task: whatever queued up during a round
    trip goes out together in the next one, at most :data:`PUBLISH_BATCH` at a time. Each
    publish gets a future that resolves when Redis answered, or fails with ``BrokerError``.

    Each answer is bounded from when the publish was *asked*, not from when its batch went out:
    a publish still queued ``deadline`` seconds after it was asked fails without being sent
    (a frozen Redis would otherwise hold each batch for a whole command timeout, and a steady
    stream would queue behind them: 9.8 s and 12.9 s answers were measured), and a batch in
    flight is given up when its oldest publish reaches the deadline. What is sent keeps its
    order. A batch given up in flight may still have reached Redis (as any timeout): its
    publishes fail but may be delivered; the ones failed in the queue were never sent.
    """

    def __init__(self, send: Send, deadline: float = PUBLISH_DEADLINE) -> None:
        self._send = send
        self._deadline = deadline
        self._outbox: collections.deque[Pending] = collections.deque()
        self._writer: asyncio.Task[None] | None = None
        self._closed = False

    def put(self, name: str, data: bytes) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        if self._closed:
            done.set_exception(BrokerError("redis broker is closed"))
            return done
        self._outbox.append((name, data, done, loop.time()))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write(), name="redis-publisher")
        return done

    async def _write(self) -> None:
        outbox = self._outbox
        loop = asyncio.get_running_loop()
        while outbox:
            now = loop.time()
            expired: list[Pending] = []
            while outbox and now - outbox[0][3] >= self._deadline:
                expired.append(outbox.popleft())
            if expired:
                _settle(expired, BrokerError(_late(self._deadline)))
                continue
            batch = [outbox.popleft() for _ in range(min(len(outbox), PUBLISH_BATCH))]
            try:
                # The oldest publish's deadline bounds the whole batch: the rest were asked
                # later, so each answer stays within its own deadline.
                async with asyncio.timeout_at(batch[0][3] + self._deadline):
                    await self._send([(name, data) for name, data, _, _ in batch])
            except TimeoutError:
                _settle(batch, BrokerError(_late(self._deadline)))
            except (RedisError, RedisClusterException, OSError) as exc:
                _settle(batch, BrokerError(f"redis publish failed: {exc}"))
            except asyncio.CancelledError:
                _settle(batch, BrokerError("redis broker is closed"))
                raise
            else:
                _settle(batch, None)

    async def close(self) -> None:
        """Fail what is in flight or queued; later publishes fail at once. Safe twice."""
        self._closed = True
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
        _settle(list(self._outbox), BrokerError("redis broker is closed"))
        self._outbox.clear()
