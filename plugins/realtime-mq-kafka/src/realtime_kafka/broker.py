"""Kafka broker: one topic carries both kinds for every channel, read whole by each instance.

Each gateway instance reads every partition of the topic with its own consumer and no consumer
group (manual assignment), starting at the end, so every instance sees every message published
after it started; a shared group would split the messages between instances. The channel is
the record key, which keeps a channel's order; kind and channel ride in headers and the
instance filters on its own subscribed set, so subscribe/unsubscribe touch one (kind, channel)
and nothing else.

Readiness is a real signal: a watcher asks the partition leaders for their end offsets every
``health_interval`` with a bounded timeout, and checks that the consumer moves when there is
something to read. A consumer that fails or stalls is rebuilt at the positions it had reached,
so nothing published while it was rebuilt is skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from realtime import metrics
from realtime.errors import BrokerError
from realtime.wire.messages import Kind
from realtime_kafka import envelope
from realtime_kafka.config import KafkaConfig
from realtime_kafka.topic import ensure_topic

if TYPE_CHECKING:
    from realtime.brokers.base import Deliver
    from realtime.config import Settings

log = logging.getLogger("realtime.broker.kafka")
# A failed consumer is rebuilt after 50-100 ms, then twice that, jittered, capped at 0.5-1 s:
# every second it is down is a second of broadcasts this instance does not deliver.
BACKOFF_START = 0.1
BACKOFF_CAP = 1.0


def backoff(failures: int) -> float:
    """Seconds before rebuild ``failures + 1``: equal jitter over a capped doubling."""
    ceiling = min(BACKOFF_CAP, BACKOFF_START * 2.0**failures) / 2
    return ceiling + random.uniform(0, ceiling)


# How long start() waits for the first healthy consumer; a Kafka that is down leaves the
# broker not-ready and retrying, it does not stop the gateway.
START_WAIT = 15.0
# A consumer that has something to read and reads nothing for this many health checks is
# stuck (a dead fetch loop): it is rebuilt.
STALL_CHECKS = 10


class _Rebuild(Exception):
    """The watcher wants a fresh consumer (partitions changed, or the consumer stalled)."""


class KafkaBroker:
    def __init__(self, config: KafkaConfig) -> None:
        self.config = config
        self._subs: set[tuple[Kind, str]] = set()
        self._producer: AIOKafkaProducer | None = None
        self._producer_lock = asyncio.Lock()
        self._topic_lock = asyncio.Lock()
        # partition -> offset of the next record to deliver; kept across consumer rebuilds.
        self._positions: dict[int, int] = {}
        self._assigned_once = False
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._closed = False

    @classmethod
    def from_settings(cls, settings: Settings) -> KafkaBroker:
        return cls(KafkaConfig.from_settings(settings))

    @property
    def ready(self) -> bool:
        return self._ready.is_set() and not self._closed

    async def start(self, deliver: Deliver) -> None:
        if self._closed:
            raise BrokerError("kafka broker is closed")
        self._task = asyncio.create_task(self._run(deliver), name="kafka-broker")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), START_WAIT)

    async def subscribe(self, kind: Kind, channel: str) -> None:
        # The consumer is positioned before ready is set and keeps its positions across
        # rebuilds, so anything published from now on is read and passes this filter.
        self._subs.add((kind, channel))

    async def unsubscribe(self, kind: Kind, channel: str) -> None:
        self._subs.discard((kind, channel))

    # --- publishing --------------------------------------------------------------------------

    async def publish(self, kind: Kind, channel: str, data: bytes) -> None:
        if self._closed:
            raise BrokerError("kafka broker is closed")
        try:
            async with asyncio.timeout(self.config.timeout):
                producer = await self._started_producer()
                await producer.send_and_wait(
                    self.config.topic,
                    data,
                    key=envelope.key(channel),
                    headers=envelope.headers(kind, channel),
                )
        except (KafkaError, OSError, TimeoutError) as exc:
            raise BrokerError(f"kafka publish failed: {exc!r}") from exc

    async def _started_producer(self) -> AIOKafkaProducer:
        if self._producer is not None:
            return self._producer
        async with self._producer_lock:
            if self._producer is None:
                if self._closed:
                    raise BrokerError("kafka broker is closed")
                await self._ensure_topic()
                producer = AIOKafkaProducer(
                    **self.config.client_options(),
                    acks=-1 if self.config.acks == "all" else 1,
                    max_request_size=self.config.max_message_bytes,
                    linger_ms=0,
                )
                try:
                    await producer.start()
                except BaseException:
                    await _quietly(producer.stop(), self.config.timeout)
                    raise
                self._producer = producer
            return self._producer

    async def _ensure_topic(self) -> set[int]:
        async with self._topic_lock:
            return await ensure_topic(self.config)

    # --- receiving ---------------------------------------------------------------------------

    async def _run(self, deliver: Deliver) -> None:
        failures = 0
        while True:
            consumer: AIOKafkaConsumer | None = None
            tasks: list[asyncio.Task[None]] = []
            try:
                partitions = await self._ensure_topic()
                consumer = self._new_consumer()
                async with asyncio.timeout(self.config.timeout * 2):
                    await consumer.start()
                    tps = await self._assign(consumer, partitions)
                tasks = [
                    asyncio.create_task(self._consume(consumer, deliver), name="kafka-consume"),
                    asyncio.create_task(self._watch(consumer, tps), name="kafka-health"),
                ]
                self._ready.set()
                if failures:
                    metrics.broker_reconnected("kafka")
                    log.info("kafka consumer recovered", extra={"topic": self.config.topic})
                failures = 0
                # Neither ends on its own; whichever does (an error, or the watcher asking
                # for a rebuild, even while a fetch hangs) takes the other down with it.
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if not task.cancelled():
                        task.result()
                raise _Rebuild("consumer loop ended")
            except asyncio.CancelledError:
                raise
            except _Rebuild as exc:
                wait = backoff(failures)
                log.warning("rebuilding kafka consumer: %s", exc)
            except (KafkaError, OSError, TimeoutError, BrokerError) as exc:
                wait = backoff(failures)
                log.warning("kafka consumer down, retrying in %.2fs: %r", wait, exc)
            except Exception:
                wait = backoff(failures)
                log.exception("kafka consumer failed, retrying in %.2fs", wait)
            finally:
                self._ready.clear()
                for task in tasks:
                    task.cancel()
                for task in tasks:
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
                if consumer is not None:
                    await _quietly(consumer.stop(), self.config.timeout)
            failures += 1
            await asyncio.sleep(wait)

    def _new_consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            **self.config.client_options(),
            group_id=None,  # never a group: it would split messages between instances
            enable_auto_commit=False,
            auto_offset_reset="latest",
            max_partition_fetch_bytes=self.config.max_message_bytes,
            fetch_max_bytes=max(self.config.max_message_bytes, 50 * 1024 * 1024),
            metadata_max_age_ms=30_000,
        )

    async def _assign(self, consumer: AIOKafkaConsumer, partitions: set[int]) -> set[Any]:
        tps = {TopicPartition(self.config.topic, p) for p in partitions}
        consumer.assign(list(tps))
        # Explicit offsets, asked of the leaders now: a message published once ready is set
        # is never skipped by a "latest" reset the fetcher would make later.
        fresh = [tp for tp in tps if tp.partition not in self._positions]
        if self._assigned_once:
            # Partitions added after we started: what was written to them is new to us.
            starts = await consumer.beginning_offsets(fresh) if fresh else {}
        else:
            starts = await consumer.end_offsets(fresh) if fresh else {}
        for tp in tps:
            # A rebuild resumes where the last consumer was.
            offset = self._positions.get(tp.partition, starts.get(tp))
            assert offset is not None
            consumer.seek(tp, offset)
            self._positions[tp.partition] = offset
        self._assigned_once = True
        return tps

    async def _consume(self, consumer: AIOKafkaConsumer, deliver: Deliver) -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=500)
            for tp, records in batches.items():
                for record in records:
                    await self._handle(deliver, record)
                    # Only after delivery: a rebuild resumes at the first record not delivered.
                    self._positions[tp.partition] = record.offset + 1

    async def _handle(self, deliver: Deliver, record: Any) -> None:
        target = envelope.target(record.headers)
        if target is None or target not in self._subs:
            return
        value: bytes | None = record.value
        try:
            await deliver(target[0], target[1], value if value is not None else b"")
        except Exception:
            log.exception("deliver failed", extra={"channel": target[1], "kind": target[0]})

    async def _watch(self, consumer: AIOKafkaConsumer, tps: set[Any]) -> None:
        """Readiness from real round trips to the partition leaders, and stall detection."""
        stalled = 0
        last: dict[Any, int] = {}
        down_since: float | None = None
        while True:
            await asyncio.sleep(self.config.health_interval)
            try:
                async with asyncio.timeout(self.config.timeout):
                    ends = await consumer.end_offsets(list(tps))
                    # The consumer's own positions (not what we delivered): they also step
                    # over records that are not messages, such as transaction markers.
                    positions = {tp: await consumer.position(tp) for tp in tps}
            except (KafkaError, OSError, TimeoutError) as exc:
                if down_since is None:
                    down_since = time.monotonic()
                    log.warning("kafka not reachable, not ready: %r", exc)
                self._ready.clear()
                continue
            if down_since is not None:
                log.info("kafka reachable again after %.1fs", time.monotonic() - down_since)
                down_since = None
            self._ready.set()
            current = consumer.partitions_for_topic(self.config.topic)
            if current and current != {tp.partition for tp in tps}:
                raise _Rebuild(f"partitions of {self.config.topic!r} changed")
            behind = any(ends[tp] > positions[tp] for tp in tps)
            moved = positions != last
            last = positions
            stalled = stalled + 1 if behind and not moved else 0
            if stalled >= STALL_CHECKS:
                raise _Rebuild("consumer has records to read but reads none")

    # --- lifecycle ---------------------------------------------------------------------------

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._ready.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        async with self._producer_lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            await _quietly(producer.stop(), self.config.timeout)


async def _quietly(closing: Any, limit: float) -> None:
    """Release a client; a failure to say goodbye to an unreachable Kafka is not an error."""
    try:
        async with asyncio.timeout(limit):
            await closing
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.debug("kafka client close: %r", exc)
