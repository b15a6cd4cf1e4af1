"""The contract between the gateway and a message queue.

A broker moves opaque ``bytes`` for a (kind, channel) pair between gateway instances; it knows
nothing of WebSockets or JSON. The hub subscribes a channel on its first local subscriber and
unsubscribes on its last, so an instance only receives what it serves.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from realtime.wire.messages import Kind

if TYPE_CHECKING:
    from realtime.config import RedisDeployment

Deliver = Callable[[Kind, str, bytes], Awaitable[None]]

#: The largest message every broker must carry, and the largest the gateway hands one
#: (``publish``, ``publish_later``) unless the operator raises ``BROADCAST_MAX_MESSAGE_BYTES``
#: for an MQ known to carry more. The edges derive their caps from that setting, and the node
#: refuses anything larger before a broker sees it.
MAX_MESSAGE_BYTES = 1024 * 1024
#: Room the bus envelope (type, channel_id, user_id, ts) takes around what a client sent.
ENVELOPE_RESERVE = 1024
#: The largest HTTP body (``HTTP_MAX_BODY_BYTES``) or WebSocket frame (``WS_MAX_FRAME_BYTES``)
#: a setting may allow at the default message limit.
EDGE_MAX_BYTES = MAX_MESSAGE_BYTES - ENVELOPE_RESERVE


@runtime_checkable
class Broker(Protocol):
    """What every backend, ours or a third party's, implements.

    - ``start`` connects and begins calling ``deliver`` for subscribed channels; it returns
      within ``START_TIMEOUT_SECONDS`` (else the gateway exits), with ``ready`` false and
      retrying in the background while the MQ is down, or raises ``BrokerError``;
    - ``deliver`` raising never stops delivery of later messages;
    - ``publish`` raises :class:`realtime.errors.BrokerError` when the MQ did not accept it;
      ``data`` is at most :data:`MAX_MESSAGE_BYTES`;
    - ``subscribe``/``unsubscribe`` change interest in one channel of one kind and nothing else;
    - ``ready`` is false while the receiving side is down (the gateway reports it on /readyz);
    - ``close`` releases everything, leaves no ``ResourceWarning`` and is safe to call twice.

    The entry point's target has ``from_settings(settings)``: it only reads and checks
    settings (raising ``ConfigError``), no I/O. The gateway calls it once before binding its
    port to check them and drops that broker unstarted.
    """

    async def start(self, deliver: Deliver) -> None: ...

    async def publish(self, kind: Kind, channel: str, data: bytes) -> None: ...

    async def subscribe(self, kind: Kind, channel: str) -> None: ...

    async def unsubscribe(self, kind: Kind, channel: str) -> None: ...

    @property
    def ready(self) -> bool: ...

    async def close(self) -> None: ...


@runtime_checkable
class PipelinedBroker(Protocol):
    """An optional capability: publish without waiting for the MQ's round trip.

    ``publish_later`` queues the message behind every earlier one (order is kept) and returns
    a future that resolves once the MQ accepted it, or fails with ``BrokerError``. The gateway
    uses it so that one client's stream of broadcasts is pipelined instead of paying a round
    trip each.
    """

    def publish_later(self, kind: Kind, channel: str, data: bytes) -> asyncio.Future[None]: ...


@runtime_checkable
class RedisPubSubBroker(Protocol):
    """An optional capability: the broker carries Redis Pub/Sub on ``deployment``.

    The presence store keeps its members on a Redis deployment and announces changes on
    Pub/Sub; when the broker already carries Pub/Sub there, the gateway shares it instead of
    opening a second subscriber. ``sharded`` says the topics travel on sharded Pub/Sub (a
    cluster's ``SPUBLISH``), which the store's scripts cannot reach: they then hand their events
    to the gateway to publish.
    """

    @property
    def deployment(self) -> RedisDeployment: ...

    @property
    def sharded(self) -> bool: ...
