"""The broker contract suite against a real Kafka (KRaft, single node), restarts included."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from realtime.brokers.base import Broker
from realtime.errors import BrokerError
from realtime.testing import BrokerContract, Inbox
from realtime.testing.services import RestartUnsupported
from realtime.testing.waiting import free_port
from realtime.wire.messages import Kind
from realtime_kafka import KafkaBroker, KafkaConfig
from realtime_kafka.testing import KafkaServer, kafka_server


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
    plugin = KafkaBroker
    good_settings: ClassVar[dict[str, str]] = {"BROADCAST_MQ_ADDR": "127.0.0.1:9092"}
    bad_settings: ClassVar[dict[str, dict[str, str]]] = {
        "BROADCAST_KAFKA_ACKS": {"BROADCAST_KAFKA_ACKS": "some"},
        "BROADCAST_KAFKA_SASL_USERNAME": {"BROADCAST_KAFKA_SASL_MECHANISM": "PLAIN"},
    }

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

    async def make_unreachable_broker(self) -> Broker:
        config = KafkaConfig(bootstrap=(f"127.0.0.1:{free_port()}",), topic=self.topic, timeout=3.0)
        return KafkaBroker(config)

    async def stop_server(self) -> None:
        try:
            self.server.stop()
        except RestartUnsupported as exc:
            pytest.skip(str(exc))

    async def start_server(self) -> None:
        self.server.start()


# --- beyond the contract: what this backend does to stay alive -----------------------------


def kafka_broker(server: KafkaServer, **options: Any) -> KafkaBroker:
    topic = f"own-{uuid.uuid4().hex[:8]}"
    return KafkaBroker(KafkaConfig(bootstrap=(server.bootstrap,), topic=topic, **options))


@pytest.mark.integration
async def test_a_stuck_consumer_is_rebuilt_where_it_stopped(
    own_kafka: KafkaServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = AIOKafkaConsumer.getmany
    consumers: list[AIOKafkaConsumer] = []
    stuck: list[AIOKafkaConsumer] = []
    parked: list[AIOKafkaConsumer] = []

    async def getmany(self: AIOKafkaConsumer, *args: Any, **kwargs: Any) -> Any:
        if self not in consumers:
            consumers.append(self)
        if self in stuck:
            parked.append(self)
            await asyncio.sleep(3600)  # a fetch that never returns
        return await real(self, *args, **kwargs)

    monkeypatch.setattr(AIOKafkaConsumer, "getmany", getmany)
    broker, inbox = kafka_broker(own_kafka, partitions=2, timeout=3.0, health_interval=0.1), Inbox()
    try:
        await broker.start(inbox)
        await broker.subscribe("broadcast", "c")
        await inbox.wait_for(lambda: bool(consumers), 10, "a consumer fetching")
        stuck.extend(consumers)
        # A fetch already in flight when the consumer got stuck could still return what is
        # published next (it was flaky under load): publish once the consumer is parked.
        await inbox.wait_for(lambda: bool(parked), 10, "the consumer stuck in a fetch")
        for i in range(3):
            await broker.publish("broadcast", "c", b"%d" % i)
        # Noticed by the watcher (10 checks without progress), rebuilt at the old positions.
        await inbox.wait_for(lambda: len(inbox.on("broadcast", "c")) >= 3, 20)
        assert inbox.on("broadcast", "c") == [b"0", b"1", b"2"]
        assert len(consumers) >= 2
        await inbox.wait_for(lambda: broker.ready, 10, "ready after the rebuild")
    finally:
        await broker.close()


@pytest.mark.integration
async def test_a_failing_deliver_does_not_stop_the_consumer(own_kafka: KafkaServer) -> None:
    inbox = Inbox()

    async def deliver(kind: Kind, channel: str, data: bytes) -> None:
        if data == b"boom":
            raise RuntimeError("a hub bug")
        await inbox(kind, channel, data)

    broker = kafka_broker(own_kafka)
    try:
        await broker.start(deliver)
        await broker.subscribe("presence", "c")
        await broker.publish("presence", "c", b"boom")
        await broker.publish("presence", "c", b"after")
        await inbox.wait_for(lambda: inbox.on("presence", "c") == [b"after"], 15)
    finally:
        await broker.close()


@pytest.mark.integration
async def test_the_topic_is_created_with_our_settings(own_kafka: KafkaServer) -> None:
    broker = kafka_broker(own_kafka, partitions=4, retention_ms=120_000)
    admin = AIOKafkaAdminClient(bootstrap_servers=own_kafka.bootstrap)
    try:
        await broker.start(Inbox())
        assert broker.ready
        await admin.start()
        (described,) = await admin.describe_topics([broker.config.topic])
        assert len(described["partitions"]) == 4
        resource = ConfigResource(ConfigResourceType.TOPIC, broker.config.topic)
        (response,) = await admin.describe_configs([resource])
        configs = {entry[0]: entry[1] for entry in response.resources[0][4]}
        assert configs["max.message.bytes"] == str(broker.config.max_message_bytes)
        assert configs["retention.ms"] == "120000"
    finally:
        await admin.close()
        await broker.close()


@pytest.mark.integration
async def test_a_missing_topic_it_may_not_create_means_not_ready(
    own_kafka: KafkaServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("realtime_kafka.broker.START_WAIT", 2.0)
    broker = kafka_broker(own_kafka, create_topic=False, timeout=0.5)
    admin = AIOKafkaAdminClient(bootstrap_servers=own_kafka.bootstrap)
    try:
        await broker.start(Inbox())
        assert not broker.ready
        with pytest.raises(BrokerError):
            await broker.publish("broadcast", "c", b"nowhere to go")
        await admin.start()
        # Neither the lookups nor the publish made the broker auto-create it.
        assert broker.config.topic not in await admin.list_topics()
    finally:
        await admin.close()
        await broker.close()
