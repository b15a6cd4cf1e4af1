"""RabbitMQ broker: one exchange shared by all gateways, one private queue per gateway.

- Publishing goes to the exchange (``topic`` or ``direct``, durable) with publisher confirms:
  a publish returns once RabbitMQ has acked it, and raises ``BrokerError`` on a nack, a lost
  connection or no confirm within the timeout. While the connection is down it raises at once.
- Each instance consumes from its own exclusive, auto-delete, server-named queue, with one
  binding per subscribed (kind, channel), so every instance receives every message published
  to a channel it serves and no other; unsubscribe removes only that binding.
- The connection is aio-pika's robust connection: it reconnects by itself, and re-declares
  the exchange on the publishing channel. The consuming side is restored by this module
  instead of aio-pika's queue restore, because after a reconnect the queue must carry the
  *current* set of bindings (channels subscribed or dropped while RabbitMQ was away), and
  aio-pika would replay a stale set on a client-named queue. ``ready`` is false from the
  moment the connection drops until the new queue is bound and consumed from.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
from typing import TYPE_CHECKING, Any

import aio_pika
import aiormq
from yarl import URL

from realtime import metrics
from realtime.errors import BrokerError
from realtime.wire.messages import Kind
from realtime_rabbitmq.options import RabbitMQOptions
from realtime_rabbitmq.routing import headers, routing_key, target

if TYPE_CHECKING:
    from aio_pika.abc import AbstractExchange, AbstractRobustChannel
    from aiormq.abc import AbstractChannel, DeliveredMessage
    from pamqp.commands import Basic

    from realtime.brokers.base import Deliver
    from realtime.config import Settings

log = logging.getLogger("realtime.broker.rabbitmq")
#: How long start() waits for the first connection before returning not-ready.
START_WAIT = 5.0
#: Bound on each declare/bind/consume round trip.
RPC_TIMEOUT = 10.0
CLOSE_TIMEOUT = 10.0
# The consumer's set-up is retried after 50-100 ms, then twice that, jittered, capped at
# 0.5-1 s: every second it is down is a second of broadcasts this instance does not deliver.
RETRY_START = 0.1
RETRY_CAP = 1.0


def backoff(failures: int) -> float:
    """Seconds before retry ``failures + 1``: equal jitter over a capped doubling."""
    ceiling = min(RETRY_CAP, RETRY_START * 2.0**failures) / 2
    return ceiling + random.uniform(0, ceiling)


class RabbitMQBroker:
    """A :class:`realtime.brokers.base.Broker` on RabbitMQ (AMQP 0-9-1, aio-pika)."""

    def __init__(self, options: RabbitMQOptions) -> None:
        self.options = options
        # What the hub wants; the consumer's queue is (re)bound to exactly this set.
        self._interest: set[tuple[Kind, str]] = set()
        # Serialises binding changes with the queue setup, so none is lost in between.
        self._lock = asyncio.Lock()
        self._connection: aio_pika.RobustConnection | None = None
        self._publisher: AbstractRobustChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._consumer_channel: AbstractRobustChannel | None = None
        self._raw: AbstractChannel | None = None
        self._queue: str | None = None
        self._consumer_tag: str | None = None
        self._lost = asyncio.Event()
        self._up = asyncio.Event()
        # Bounded in practice by the prefetch: RabbitMQ sends no more unacked messages.
        self._inbox: asyncio.Queue[DeliveredMessage] = asyncio.Queue()
        self._deliver: Deliver | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False

    @classmethod
    def from_settings(cls, settings: Settings) -> RabbitMQBroker:
        return cls(RabbitMQOptions.from_settings(settings))

    @property
    def ready(self) -> bool:
        connection = self._connection
        return (
            not self._closed
            and self._up.is_set()
            and connection is not None
            and connection.connected.is_set()
        )

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self, deliver: Deliver) -> None:
        if self._closed:
            raise BrokerError("rabbitmq broker is closed")
        if self._connection is not None:
            raise BrokerError("rabbitmq broker already started")
        self._deliver = deliver
        self._connection = aio_pika.RobustConnection(
            URL(self.options.url),
            # Keep retrying the first connection too: a gateway starts not-ready and becomes
            # ready when RabbitMQ answers, as it does after any later outage.
            fail_fast="false",
            reconnect_interval=str(self.options.reconnect_interval),
            client_properties={
                "connection_name": f"realtime-mq {socket.gethostname()} pid {os.getpid()}"
            },
        )
        self._connection.close_callbacks.add(self._connection_lost)
        self._tasks = [
            asyncio.create_task(self._consume_forever(), name="rabbitmq-consumer"),
            asyncio.create_task(self._deliver_forever(), name="rabbitmq-deliver"),
        ]
        # A healthy start is ready at once; a RabbitMQ that is down leaves us retrying.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._up.wait(), START_WAIT)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._up.clear()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                # Closes the channels too; the server drops our exclusive queue with them.
                await asyncio.wait_for(connection.close(), CLOSE_TIMEOUT)
            except Exception as exc:
                log.warning("rabbitmq close failed: %s", exc)
        self._publisher = self._consumer_channel = None
        self._exchange = None
        self._raw = None
        while not self._inbox.empty():
            self._inbox.get_nowait()

    def _connection_lost(self, *_: Any) -> None:
        # Said at once, before any restore: /readyz must not report a deaf subscriber.
        self._up.clear()

    # --- publishing -----------------------------------------------------------------------------

    async def publish(self, kind: Kind, channel: str, data: bytes) -> None:
        if self._closed:
            raise BrokerError("rabbitmq broker is closed")
        connection, exchange = self._connection, self._exchange
        if connection is None or exchange is None or not connection.connected.is_set():
            raise BrokerError("rabbitmq is not connected")
        message = aio_pika.Message(
            body=data,
            headers=dict(headers(kind, channel)),
            delivery_mode=aio_pika.DeliveryMode.NOT_PERSISTENT,
        )
        key = routing_key(kind, channel)
        timeout = self.options.publish_timeout
        try:
            async with asyncio.timeout(timeout):
                # mandatory=False: a channel nobody serves right now is not an error.
                await exchange.publish(message, key, mandatory=False)
        except TimeoutError as exc:
            raise BrokerError(f"rabbitmq did not confirm the publish within {timeout}s") from exc
        except Exception as exc:
            raise BrokerError(f"rabbitmq publish failed: {exc!r}") from exc

    # --- interest -------------------------------------------------------------------------------

    async def subscribe(self, kind: Kind, channel: str) -> None:
        self._interest.add((kind, channel))
        await self._change(True, kind, channel)

    async def unsubscribe(self, kind: Kind, channel: str) -> None:
        self._interest.discard((kind, channel))
        await self._change(False, kind, channel)

    async def _change(self, bind: bool, kind: Kind, channel: str) -> None:
        async with self._lock:
            raw, queue = self._raw, self._queue
            if raw is None or queue is None or raw.is_closed or not self._up.is_set():
                return  # the consumer binds the whole current set when it comes back
            key = routing_key(kind, channel)
            try:
                if bind:
                    await raw.queue_bind(
                        queue, self.options.exchange, routing_key=key, timeout=RPC_TIMEOUT
                    )
                else:
                    await raw.queue_unbind(
                        queue, self.options.exchange, routing_key=key, timeout=RPC_TIMEOUT
                    )
            except Exception as exc:
                # The queue's bindings are now unknown: rebuild it from _interest.
                log.warning(
                    "rabbitmq %s failed, rebuilding the queue: %r",
                    "bind" if bind else "unbind",
                    exc,
                    extra={"routing_key": key},
                )
                self._up.clear()
                self._lost.set()

    # --- consuming ------------------------------------------------------------------------------

    async def _consume_forever(self) -> None:
        connection = self._connection
        assert connection is not None
        connecting = True
        failures = 0
        while True:
            try:
                if connecting:
                    # Returns once connected; aio-pika retries every reconnect_interval till then.
                    await connection.connect(timeout=RPC_TIMEOUT)
                    connecting = False
                await connection.connected.wait()
                if self._exchange is None:
                    await self._open_publisher(connection)
                if self._consumer_channel is None:
                    self._consumer_channel = await self._open_channel(connection, confirms=False)
                raw = await self._start_consuming(self._consumer_channel)
                if failures:
                    metrics.broker_reconnected("rabbitmq")
                failures = 0
                await self._until_lost(raw)
                if not self._closed:
                    log.warning("rabbitmq consumer lost; restoring it")
            except asyncio.CancelledError:
                raise
            except aiormq.exceptions.ChannelPreconditionFailed as exc:
                wait = backoff(failures)
                log.error(
                    "rabbitmq refused the exchange %r of type %r (declared otherwise already?);"
                    " retrying in %.1fs: %s",
                    self.options.exchange,
                    self.options.exchange_type,
                    wait,
                    exc,
                )
            except Exception as exc:
                wait = backoff(failures)
                log.warning("rabbitmq consumer setup failed, retrying in %.2fs: %r", wait, exc)
            else:
                wait = backoff(failures)  # the consumer was lost: restore it soon
            finally:
                self._up.clear()
                self._raw = self._queue = self._consumer_tag = None
            failures += 1
            await asyncio.sleep(wait)

    async def _open_channel(
        self, connection: aio_pika.RobustConnection, *, confirms: bool
    ) -> AbstractRobustChannel:
        channel = connection.channel(publisher_confirms=confirms)
        try:
            await channel.initialize(timeout=RPC_TIMEOUT)
        except BaseException:
            with contextlib.suppress(Exception):
                await channel.close()
            raise
        return channel

    async def _open_publisher(self, connection: aio_pika.RobustConnection) -> None:
        channel = await self._open_channel(connection, confirms=True)
        try:
            # Robust: aio-pika re-declares it on every reconnect, before publishing resumes.
            exchange = await channel.declare_exchange(
                self.options.exchange,
                type=self.options.exchange_type,
                durable=True,
                timeout=RPC_TIMEOUT,
            )
        except BaseException:
            with contextlib.suppress(Exception):
                await channel.close()
            raise
        self._publisher, self._exchange = channel, exchange

    async def _start_consuming(self, channel: AbstractRobustChannel) -> AbstractChannel:
        await asyncio.wait_for(channel.ready(), RPC_TIMEOUT)
        raw = await channel.get_underlay_channel()
        async with self._lock:
            self._lost.clear()
            await raw.basic_qos(prefetch_count=self.options.prefetch, timeout=RPC_TIMEOUT)
            declared = await raw.queue_declare(
                "", exclusive=True, auto_delete=True, timeout=RPC_TIMEOUT
            )
            queue = declared.queue
            assert queue, "RabbitMQ names a queue declared without a name"
            for kind, name in list(self._interest):
                await raw.queue_bind(
                    queue,
                    self.options.exchange,
                    routing_key=routing_key(kind, name),
                    timeout=RPC_TIMEOUT,
                )
            consumed = await raw.basic_consume(queue, self._on_message, timeout=RPC_TIMEOUT)
            self._raw, self._queue = raw, queue
            self._consumer_tag = consumed.consumer_tag
            self._up.set()
        log.info(
            "rabbitmq consumer ready",
            extra={
                "queue": queue,
                "bindings": len(self._interest),
                "url": self.options.display_url,
            },
        )
        return raw

    async def _until_lost(self, raw: AbstractChannel) -> None:
        """Return when the channel closes, RabbitMQ cancels our consumer, or a bind failed."""
        lost = asyncio.create_task(self._lost.wait())
        tag = self._consumer_tag

        def cancelled(frame: Basic.Cancel) -> None:
            if frame.consumer_tag == tag:  # e.g. an operator deleted the queue
                self._lost.set()

        raw.on_consumer_cancel_callbacks.add(cancelled)
        try:
            await asyncio.wait([raw.closing, lost], return_when=asyncio.FIRST_COMPLETED)
        finally:
            raw.on_consumer_cancel_callbacks.discard(cancelled)
            lost.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await lost
        if not raw.is_closed and self._queue is not None:
            # Still open (a cancel or a failed bind): drop the old queue, a new one follows.
            with contextlib.suppress(Exception):
                await raw.queue_delete(self._queue, timeout=RPC_TIMEOUT)

    async def _on_message(self, message: DeliveredMessage) -> None:
        # aiormq runs one task per delivery in arrival order; queueing without an await first
        # keeps that order for the single delivering task.
        self._inbox.put_nowait(message)

    async def _deliver_forever(self) -> None:
        while True:
            message = await self._inbox.get()
            try:
                await self._handle(message)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("rabbitmq deliver failed", extra={"routing_key": message.routing_key})
            finally:
                await self._ack(message)

    async def _handle(self, message: DeliveredMessage) -> None:
        props = message.header.properties
        found = target(message.routing_key or "", props.headers)
        # Also drops what was already in flight when its channel was unsubscribed.
        if found is None or found not in self._interest or self._deliver is None:
            return
        await self._deliver(found[0], found[1], message.body)

    async def _ack(self, message: DeliveredMessage) -> None:
        tag = message.delivery_tag
        if tag is None or message.channel.is_closed:
            return  # the queue died with its channel; nothing left to ack
        try:
            await message.channel.basic_ack(tag)
        except Exception as exc:
            log.debug("rabbitmq ack failed: %r", exc)
