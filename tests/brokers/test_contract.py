"""The broker contract suite run against the core's own backends."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import ClassVar

import pytest

from realtime.brokers.base import Broker
from realtime.brokers.memory import MemoryBroker, MemoryBus
from realtime.brokers.redis.classic import RedisBroker
from realtime.brokers.redis.cluster import RedisClusterBroker
from realtime.brokers.redis.factory import RedisBrokers, for_deployment
from realtime.config import RedisDeployment
from realtime.testing import BrokerContract
from realtime.testing.services import (
    RedisClusterSetup,
    RedisSentinelSetup,
    RedisServer,
    RestartUnsupported,
    redis_cluster,
    redis_sentinel_setup,
    redis_server,
)
from realtime.testing.waiting import free_port
from tests.brokers.deployments import channel_on_node, sentinel_deployment


class TestMemoryBroker(BrokerContract):
    plugin = MemoryBroker

    @pytest.fixture(autouse=True)
    def _bus(self) -> None:
        self.bus = MemoryBus()

    async def make_broker(self) -> Broker:
        return MemoryBroker(self.bus)


@pytest.fixture(scope="module")
def own_redis() -> Iterator[RedisServer]:
    # Its own server: the restart cases stop it.
    with redis_server() as server:
        yield server


@pytest.mark.integration
class TestRedisBroker(BrokerContract):
    plugin = RedisBrokers
    good_settings: ClassVar[dict[str, str]] = {
        "BROADCAST_MQ_ADDR": "127.0.0.1:6390",
        "BROADCAST_MQ_DB": "2",
    }
    bad_settings: ClassVar[dict[str, dict[str, str]]] = {
        "BROADCAST_MQ_DB": {"BROADCAST_MQ_DB": "two"},
        "BROADCAST_MQ_ADDR": {"BROADCAST_MQ_ADDR": "http://127.0.0.1:6390"},
    }

    @pytest.fixture(autouse=True)
    def _server(self, own_redis: RedisServer) -> None:
        self.server = own_redis

    async def make_broker(self) -> Broker:
        return RedisBroker(self.server.url)

    async def make_unreachable_broker(self) -> Broker:
        return RedisBroker(f"redis://127.0.0.1:{free_port()}/0")

    async def stop_server(self) -> None:
        try:
            self.server.stop()
        except RestartUnsupported as exc:
            pytest.skip(str(exc))

    async def start_server(self) -> None:
        self.server.start()


# --- Sentinel and Cluster ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def own_sentinel() -> Iterator[RedisSentinelSetup]:
    with redis_sentinel_setup() as setup:
        yield setup


@pytest.mark.integration
class TestRedisSentinelBroker(BrokerContract):
    """Through the sentinels; the restart cases stop and start the master itself (a failover
    to a replica is tested in tests/test_redis_deployments.py)."""

    @pytest.fixture(autouse=True)
    def _setup(self, own_sentinel: RedisSentinelSetup) -> None:
        self.setup = own_sentinel

    async def make_broker(self) -> Broker:
        return for_deployment(sentinel_deployment(self.setup))

    async def stop_server(self) -> None:
        if self.setup.master is None:
            pytest.skip("sentinels given by REDIS_SENTINELS: we do not own their master")
        self.setup.master.stop()

    async def start_server(self) -> None:
        assert self.setup.master is not None
        await asyncio.to_thread(self.setup.master.start)


@pytest.fixture(scope="module")
def own_cluster() -> Iterator[RedisClusterSetup]:
    with redis_cluster() as cluster:
        yield cluster


@pytest.mark.integration
class TestRedisClusterBroker(BrokerContract):
    """Sharded Pub/Sub on a 3-master cluster. Each test's channel lives on the first node, and
    the restart cases stop and start that node only: the one owning the channel's slot."""

    @pytest.fixture(autouse=True)
    def _cluster(self, own_cluster: RedisClusterSetup) -> None:
        self.cluster = own_cluster

    @pytest.fixture
    def channel(self, own_cluster: RedisClusterSetup) -> str:
        return channel_on_node(own_cluster, 0)

    async def make_broker(self) -> Broker:
        return RedisClusterBroker(RedisDeployment(self.cluster.url, cluster=True))

    async def stop_server(self) -> None:
        if self.cluster.kind != "native":
            pytest.skip("cluster given by REDIS_CLUSTER_NODES: we do not own its nodes")
        # RedisClusterSetup.stop() stops every node; the contract wants the channel's owner down.
        self.cluster._procs[0].stop()

    async def start_server(self) -> None:
        # start() starts what is not running (the stopped node) and waits for cluster_state:ok.
        await asyncio.to_thread(self.cluster.start)


@pytest.mark.integration
class TestRedisClusterClassicBroker(TestRedisClusterBroker):
    """REDIS_CLUSTER_PUBSUB=classic, the seed-compatible mode."""

    async def make_broker(self) -> Broker:
        return RedisClusterBroker(
            RedisDeployment(self.cluster.url, cluster=True, cluster_pubsub="classic")
        )
