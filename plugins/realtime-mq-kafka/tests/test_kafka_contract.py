"""The broker contract suite against a real Kafka (KRaft, single node), restarts included."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from realtime.brokers.base import Broker
from realtime.testing import BrokerContract
from realtime.testing.servers import KafkaServer, RestartUnsupported, kafka_server
from realtime_kafka import KafkaBroker, KafkaConfig


@pytest.fixture(scope="module")
def own_kafka() -> Iterator[KafkaServer]:
    # Its own server: the restart cases stop it.
    with kafka_server() as server:
        yield server


@pytest.mark.integration
class TestKafkaBroker(BrokerContract):
    # A JVM broker on a 2-core machine restarts in seconds, and a client notices within a
    # health interval plus its request timeout.
    recovery_timeout = 90.0

    @pytest.fixture(autouse=True)
    def _server(self, own_kafka: KafkaServer) -> None:
        self.server = own_kafka
        # A topic per test: no test reads another's leftovers, and topic creation is tested
        # every time.
        self.topic = f"contract-{uuid.uuid4().hex[:8]}"

    async def make_broker(self) -> Broker:
        return KafkaBroker(
            KafkaConfig(
                bootstrap=(self.server.bootstrap,),
                topic=self.topic,
                partitions=3,
                timeout=3.0,
                health_interval=0.5,
            )
        )

    async def stop_server(self) -> None:
        try:
            self.server.stop()
        except RestartUnsupported as exc:
            pytest.skip(str(exc))

    async def start_server(self) -> None:
        self.server.start()
