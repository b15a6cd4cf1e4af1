"""The backends the settings name: the broker, the presence bus and the presence store.

The core asks a broker for optional capabilities (:mod:`realtime.brokers.base`), never for its
class: a plugin that carries Redis Pub/Sub can share it with presence as ours do.
"""

from __future__ import annotations

from typing import cast

import redis.asyncio as aioredis

from realtime import redisconn
from realtime.auth.hook import AuthHook
from realtime.brokers.base import Broker, RedisPubSubBroker
from realtime.brokers.memory import MemoryBroker
from realtime.brokers.redis.factory import for_deployment
from realtime.brokers.registry import load_broker
from realtime.config import Settings
from realtime.engine.node import Node
from realtime.engine.permissions import Permissions
from realtime.history.base import History, HistoryStore
from realtime.history.channels import HistoryChannels
from realtime.history.memory import MemoryHistory
from realtime.history.redis import RedisHistory
from realtime.presence.base import PresenceStore
from realtime.presence.memory import MemoryPresence
from realtime.presence.redis import RedisPresence
from realtime.webhooks import Webhooks
from realtime.webhooks.memory import MemoryWebhooks
from realtime.webhooks.poster import BACKOFF_CAP, Poster
from realtime.webhooks.redis import RedisWebhooks


def build_node(settings: Settings) -> Node:
    """Pick the broker, the presence bus and the presence store the settings name."""
    broker = load_broker(settings.broker, settings)
    hooks = poster(settings)
    webhooks: Webhooks | None = None
    store: PresenceStore
    presence_bus: Broker
    if settings.presence_store == "redis":
        # A cluster client has the same command and pipeline API as the plain one; the store's
        # keys of one channel share a hash tag, so each of its transactions stays in one slot.
        client = cast(aioredis.Redis, redisconn.client(settings.redis))
        # Presence events travel on Redis Pub/Sub as in the seed, whatever carries broadcasts.
        if isinstance(broker, RedisPubSubBroker) and broker.deployment == settings.redis:
            presence_bus = broker
            sharded = broker.sharded
        else:
            redis_bus = for_deployment(settings.redis)
            presence_bus, sharded = redis_bus, redis_bus.sharded
        # The store's scripts publish the events themselves (in version order) unless the bus
        # is sharded Pub/Sub, which a script cannot reach outside its keys' slot.
        store = RedisPresence(
            client,
            settings.presence_ttl,
            settings.presence_max_members,
            publish_in_script=not sharded,
            leave_grace=settings.presence_leave_grace,
            webhook_queue=settings.webhook_queue_size if hooks is not None else 0,
        )
        if hooks is not None:
            webhooks = RedisWebhooks(
                cast(aioredis.Redis, redisconn.client(settings.redis)),
                hooks,
                settings.webhook_events,
                settings.webhook_claim_seconds,
            )
    else:
        memory_hooks = None
        if hooks is not None:
            webhooks = memory_hooks = MemoryWebhooks(
                hooks, settings.webhook_events, settings.webhook_queue_size
            )
        store = MemoryPresence(
            settings.presence_ttl,
            settings.presence_max_members,
            leave_grace=settings.presence_leave_grace,
            webhooks=memory_hooks.put if memory_hooks is not None else None,
        )
        # The in-process broker carries presence too when it carries broadcasts (one bus, one
        # delivery queue); any other broker gets an in-process presence bus beside it.
        presence_bus = broker if settings.broker == "memory" else MemoryBroker()
    return Node(
        broker,
        presence_bus,
        store,
        settings.presence_ttl,
        max_meta_bytes=settings.presence_max_meta_bytes,
        diff_window=settings.presence_diff_window_ms / 1000,
        order_wait=settings.presence_order_wait_ms / 1000,
        start_timeout=settings.start_timeout,
        max_message_bytes=settings.broker_max_message_bytes,
        permissions=permissions(settings),
        probe_interval=settings.probe_interval,
        probe_timeout=settings.probe_timeout,
        control_timeout=settings.server_api_timeout,
        leave_grace=settings.presence_leave_grace,
        history=history(settings),
        webhooks=webhooks,
    )


def poster(settings: Settings) -> Poster | None:
    if settings.webhook_url is None or settings.webhook_secret is None:
        return None
    # The instance retrying a batch renews its hold before each attempt: a wait of at most a
    # third of the claim time plus a POST of under half of it (checked at start) keep the gap
    # between renewals below the claim time, so no other instance takes the batch over.
    cap = min(BACKOFF_CAP, settings.webhook_claim_seconds / 3)
    return Poster(settings.webhook_url, settings.webhook_secret, settings.webhook_timeout, cap)


def history(settings: Settings) -> History | None:
    """History where presence lives: on the presence Redis whatever MQ carries broadcasts (so
    every instance shares one count of offsets), in this process in embedded mode."""
    if not settings.history_channels:
        return None
    store: HistoryStore
    if settings.presence_store == "redis":
        client = cast(aioredis.Redis, redisconn.client(settings.redis))
        store = RedisHistory(client, settings.history_size, settings.history_ttl)
    else:
        store = MemoryHistory(settings.history_size, settings.history_ttl)
    return History(HistoryChannels(settings.history_channels), store, settings.history_size)


def permissions(settings: Settings) -> Permissions:
    hook = None
    if settings.auth_hook_url is not None:
        hook = AuthHook(
            settings.auth_hook_url, settings.auth_hook_timeout, settings.auth_hook_cache_seconds
        )
    return Permissions(settings.channel_policy, hook, settings.auth_hook_fail_open)
