from __future__ import annotations

import pytest

from realtime.brokers.memory import MemoryBroker
from realtime.brokers.redis.classic import RedisBroker
from realtime.brokers.redis.cluster import RedisClusterBroker
from realtime.brokers.registry import available, load_broker
from realtime.errors import BrokerNotFound, ConfigError
from realtime.testing.gateway import make_settings


def test_core_brokers_are_entry_points() -> None:
    assert {"memory", "redis"} <= set(available())


def test_load_by_name() -> None:
    assert isinstance(load_broker("memory", make_settings()), MemoryBroker)
    broker = load_broker("redis", make_settings(REDIS_URL="redis://127.0.0.1:1/0"))
    assert isinstance(broker, RedisBroker)
    assert broker.url == "redis://127.0.0.1:1/0"


async def test_redis_picks_the_cluster_broker_for_a_cluster() -> None:
    broker = load_broker("redis", make_settings(REDIS_CLUSTER="1", REDIS_ADDR="127.0.0.1:1"))
    assert isinstance(broker, RedisClusterBroker)
    assert broker.sharded
    await broker.close()


def test_broadcast_mq_addr_overrides_redis_for_the_broker() -> None:
    settings = make_settings(BROADCAST_MQ_ADDR="10.0.0.9:6390", BROADCAST_MQ_DB="2")
    broker = load_broker("redis", settings)
    assert isinstance(broker, RedisBroker)
    assert broker.url == "redis://10.0.0.9:6390/2"


def test_unknown_broker_lists_installed_and_says_what_to_do() -> None:
    with pytest.raises(BrokerNotFound) as info:
        load_broker("carrier-pigeon", make_settings())
    message = str(info.value)
    assert isinstance(info.value, ConfigError)
    assert message.startswith("BROADCAST_MQ_TYPE: no broker 'carrier-pigeon' installed")
    assert "memory" in message and "redis" in message
    assert "pip install realtime-mq-carrier-pigeon" in message
