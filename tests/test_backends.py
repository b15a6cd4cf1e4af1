"""build_node picks the broker, the presence bus and the store from the settings, asking the
broker for its capabilities, never for its class. Nothing here connects anywhere."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from realtime import backends
from realtime.brokers.base import Broker
from realtime.brokers.memory import MemoryBroker
from realtime.brokers.redis.classic import RedisBroker
from realtime.brokers.redis.cluster import RedisClusterBroker
from realtime.config import RedisDeployment, Settings
from realtime.engine.node import Node
from realtime.presence.memory import MemoryPresence
from realtime.presence.redis import RedisPresence
from realtime.testing.gateway import make_settings

REDIS = {"BROADCAST_MQ_TYPE": "redis", "PRESENCE_STORE": "redis", "REDIS_ADDR": "127.0.0.1:1"}
CLUSTER = {**REDIS, "REDIS_CLUSTER": "1"}


class RedisCarryingPlugin(MemoryBroker):
    """A third party's broker that says it carries Pub/Sub on a Redis deployment."""

    def __init__(self, deployment: RedisDeployment, sharded: bool) -> None:
        super().__init__()
        self.deployment = deployment
        self.sharded = sharded


@pytest.fixture
async def build() -> AsyncIterator[Callable[[Settings], Node]]:
    nodes: list[Node] = []

    def make(settings: Settings) -> Node:
        nodes.append(backends.build_node(settings))
        return nodes[-1]

    yield make
    for node in nodes:
        await node.close()


def scripts_publish(node: Node) -> bool:
    assert isinstance(node.store, RedisPresence)
    return node.store._in_script


def plugin(monkeypatch: pytest.MonkeyPatch, broker: Broker) -> None:
    monkeypatch.setattr(backends, "load_broker", lambda name, settings: broker)


async def test_embedded_shares_the_memory_broker(build) -> None:  # type: ignore[no-untyped-def]
    node = build(make_settings())
    assert isinstance(node.brokers["broadcast"], MemoryBroker)
    assert node.brokers["presence"] is node.brokers["broadcast"]
    assert isinstance(node.store, MemoryPresence)


async def test_memory_presence_beside_another_broker_gets_its_own_bus(build) -> None:  # type: ignore[no-untyped-def]
    node = build(make_settings(BROADCAST_MQ_TYPE="redis", REDIS_ADDR="127.0.0.1:1"))
    assert isinstance(node.brokers["broadcast"], RedisBroker)
    assert isinstance(node.brokers["presence"], MemoryBroker)


async def test_redis_broker_on_the_presence_deployment_carries_presence(build) -> None:  # type: ignore[no-untyped-def]
    node = build(make_settings(**REDIS))
    assert isinstance(node.brokers["broadcast"], RedisBroker)
    assert node.brokers["presence"] is node.brokers["broadcast"]
    assert scripts_publish(node)


async def test_redis_broker_elsewhere_leaves_presence_its_own_bus(build) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(**REDIS, BROADCAST_MQ_ADDR="127.0.0.1:2")
    node = build(settings)
    bus = node.brokers["presence"]
    assert bus is not node.brokers["broadcast"]
    assert isinstance(bus, RedisBroker) and bus.deployment == settings.redis
    assert scripts_publish(node)


@pytest.mark.parametrize(("pubsub", "in_script"), [("sharded", False), ("classic", True)])
async def test_cluster_broker_carries_presence_and_says_if_scripts_may_publish(  # type: ignore[no-untyped-def]
    build, pubsub: str, in_script: bool
) -> None:
    node = build(make_settings(**CLUSTER, REDIS_CLUSTER_PUBSUB=pubsub))
    assert isinstance(node.brokers["broadcast"], RedisClusterBroker)
    assert node.brokers["presence"] is node.brokers["broadcast"]
    assert scripts_publish(node) is in_script


async def test_a_plugin_with_the_capability_carries_presence(build, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(**CLUSTER)  # the loader is patched: any name
    carrier = RedisCarryingPlugin(settings.redis, sharded=True)
    plugin(monkeypatch, carrier)
    node = build(settings)
    assert node.brokers["presence"] is carrier
    assert not scripts_publish(node)


async def test_a_plugin_without_the_capability_gets_a_redis_presence_bus(
    build, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings(**CLUSTER)  # the loader is patched: any name
    plugin(monkeypatch, MemoryBroker())
    node = build(settings)
    bus = node.brokers["presence"]
    assert isinstance(bus, RedisClusterBroker) and bus.deployment == settings.redis
    assert not scripts_publish(node)
