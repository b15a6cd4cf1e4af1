"""realtime_kafka.testing: the plugin's Kafka launcher, against the server it starts."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError

from realtime.testing.services import RestartUnsupported, backend
from realtime.testing.waiting import free_port
from realtime_kafka.testing import KafkaServer, kafka_ready, kafka_server


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def test_a_server_from_the_environment_cannot_be_restarted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "k1.invalid:9093,k2.invalid:9094")
    with kafka_server() as server:
        assert (server.kind, server.host, server.port) == ("env", "k1.invalid", 9093)
        assert server.bootstrap == "k1.invalid:9093,k2.invalid:9094"
        with pytest.raises(RestartUnsupported):
            server.stop()


def test_the_ready_probe_fails_where_nothing_listens() -> None:
    with pytest.raises((OSError, KafkaError)):
        kafka_ready(f"127.0.0.1:{free_port()}", timeout=1)


@pytest.fixture(scope="module")
def kafka() -> Iterator[KafkaServer]:
    with kafka_server() as server:
        yield server


async def produce(bootstrap: str, topic: str, value: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        async with asyncio.timeout(20):
            await producer.send_and_wait(topic, value)
    finally:
        await producer.stop()


async def consume(bootstrap: str, topic: str, count: int) -> list[bytes]:
    # No group: partitions are assigned directly, so no coordinator or rebalance to wait for.
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest")
    await consumer.start()
    values: list[bytes] = []
    try:
        async with asyncio.timeout(20):
            while len(values) < count:
                record = await consumer.getone()
                assert record.value is not None
                values.append(record.value)
    finally:
        await consumer.stop()
    return values


@pytest.mark.integration
async def test_kafka_produce_consume(kafka: KafkaServer) -> None:
    assert await asyncio.to_thread(kafka_ready, kafka.bootstrap)
    topic = unique("t")
    await produce(kafka.bootstrap, topic, b"hello")
    assert await consume(kafka.bootstrap, topic, 1) == [b"hello"]


@pytest.mark.integration
async def test_kafka_produce_after_restart(kafka: KafkaServer) -> None:
    topic, port = unique("t"), kafka.port
    await produce(kafka.bootstrap, topic, b"before")
    try:
        await asyncio.to_thread(kafka.restart)
    except RestartUnsupported as exc:
        pytest.skip(str(exc))
    assert kafka.port == port
    await produce(kafka.bootstrap, topic, b"after")
    # Same log dir: the record written before the restart is still there.
    assert await consume(kafka.bootstrap, topic, 2) == [b"before", b"after"]


@pytest.mark.integration
def test_a_cluster_id_that_starts_with_a_dash_still_formats(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A random base64url id starts with "-" one time in 64; Kafka's storage tool then read it
    # as an option ("argument --cluster-id/-t: expected one argument") and the start failed.
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or backend() != "native":
        pytest.skip("the storage is formatted only when Kafka is started natively")
    monkeypatch.setattr("realtime_kafka.testing._cluster_id", lambda: "-8hUNAgOR36Jrr2BXkhMNA")
    with kafka_server() as server:
        assert kafka_ready(server.bootstrap, timeout=20)
