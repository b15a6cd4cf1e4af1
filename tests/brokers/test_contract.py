"""The broker contract suite run against the core's own backends."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from realtime.brokers.base import Broker
from realtime.brokers.memory import MemoryBroker, MemoryBus
from realtime.brokers.redis import RedisBroker
from realtime.testing import BrokerContract
from realtime.testing.servers import RedisServer, RestartUnsupported, redis_server


class TestMemoryBroker(BrokerContract):
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
    @pytest.fixture(autouse=True)
    def _server(self, own_redis: RedisServer) -> None:
        self.server = own_redis

    async def make_broker(self) -> Broker:
        return RedisBroker(self.server.url)

    async def stop_server(self) -> None:
        try:
            self.server.stop()
        except RestartUnsupported as exc:
            pytest.skip(str(exc))

    async def start_server(self) -> None:
        self.server.start()
