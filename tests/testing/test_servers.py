"""The test-server launchers, proven against the real servers they start.

Each server starts once per module; the restart tests run last within their server's group
so that earlier tests see a server that has not been restarted under them.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import Iterator

import aio_pika
import pytest
import redis.asyncio as aioredis
import redis.exceptions as redis_errors
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.sentinel import Sentinel

from realtime.testing import servers
from realtime.testing.servers import (
    KafkaServer,
    RabbitMQServer,
    RedisCluster,
    RedisSentinelSetup,
    RedisServer,
    RestartUnsupported,
    ServiceError,
    free_port,
    kafka_server,
    rabbitmq_server,
    redis_cluster,
    redis_sentinel_setup,
    redis_server,
    wait_until,
    wait_until_async,
)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def restart_or_skip(service: servers.Service) -> None:
    # In a thread: a restart blocks for seconds, and the test's event loop must not.
    try:
        await asyncio.to_thread(service.restart)
    except RestartUnsupported as exc:
        pytest.skip(str(exc))


# -- helpers, no server needed -------------------------------------------------------------


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_wait_until_returns_the_first_truthy_value() -> None:
    calls = iter([0, None, "ready"])
    assert wait_until(lambda: next(calls), timeout=1, interval=0.001) == "ready"


def test_wait_until_times_out_with_the_last_ignored_error() -> None:
    def broken() -> bool:
        raise ConnectionError("nope")

    with pytest.raises(TimeoutError) as info:
        wait_until(broken, timeout=0.05, interval=0.01, ignore=(ConnectionError,))
    assert isinstance(info.value.__cause__, ConnectionError)


async def test_wait_until_async_awaits_the_predicate() -> None:
    seen: list[int] = []

    async def grows() -> bool:
        seen.append(1)
        return len(seen) >= 3

    assert await wait_until_async(grows, timeout=1, interval=0.001)


def test_a_server_from_the_environment_cannot_be_restarted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://example.invalid:6390/2")
    with redis_server() as server:
        assert (server.kind, server.port, server.url) == (
            "env",
            6390,
            "redis://example.invalid:6390/2",
        )
        with pytest.raises(RestartUnsupported):
            server.restart()


# -- Redis ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.mark.integration
async def test_redis_set_get(redis: RedisServer) -> None:
    client = aioredis.from_url(redis.url)
    try:
        key = unique("k")
        await client.set(key, b"v")
        assert await client.get(key) == b"v"
    finally:
        await client.aclose()


@pytest.mark.integration
async def test_redis_restart_comes_back_empty_on_the_same_port(redis: RedisServer) -> None:
    key, port = unique("k"), redis.port
    client = aioredis.from_url(redis.url)
    try:
        await client.set(key, b"v")
        await restart_or_skip(redis)
        assert redis.port == port
        # The pooled connection died with the old server; redis-py reconnects on retry.
        assert await wait_until_async(
            client.ping, timeout=10, ignore=(redis_errors.ConnectionError,)
        )
        assert await client.get(key) is None
    finally:
        await client.aclose()


@pytest.mark.integration
def test_redis_start_failure_shows_the_server_log(monkeypatch: pytest.MonkeyPatch) -> None:
    if servers._backend() != "native":
        pytest.skip("only the native launcher writes a log we read")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        monkeypatch.setattr(servers, "free_port", lambda: taken.getsockname()[1])
        with pytest.raises(ServiceError, match=r"(?i)address already in use"):
            servers._native_redis()


# -- Redis Sentinel ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sentinel_setup() -> Iterator[RedisSentinelSetup]:
    with redis_sentinel_setup() as setup:
        yield setup


@pytest.mark.integration
async def test_sentinel_reports_the_master(sentinel_setup: RedisSentinelSetup) -> None:
    sentinel = Sentinel(sentinel_setup.sentinels, socket_timeout=2)
    try:
        host, port = await sentinel.discover_master(sentinel_setup.master_name)
        if sentinel_setup.master is not None:
            assert (host, port) == sentinel_setup.master.address
        master = sentinel.master_for(sentinel_setup.master_name)
        try:
            key = unique("k")
            await master.set(key, b"through-sentinel")
            assert await master.get(key) == b"through-sentinel"
        finally:
            await master.aclose()
    finally:
        for client in sentinel.sentinels:
            await client.aclose()


# -- Redis Cluster -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisCluster]:
    with redis_cluster() as started:
        yield started


@pytest.mark.integration
async def test_cluster_state_ok_on_every_node(cluster: RedisCluster) -> None:
    for host, port in cluster.nodes:
        client = aioredis.Redis(host=host, port=port)
        try:
            info = await client.cluster("INFO")
            assert info["cluster_state"] == "ok"
        finally:
            await client.aclose()


@pytest.mark.integration
async def test_cluster_routes_keys_to_their_nodes(cluster: RedisCluster) -> None:
    client = AsyncRedisCluster.from_url(cluster.url)
    try:
        keys = [unique(f"k{i}") for i in range(12)]
        for key in keys:
            await client.set(key, key.encode())
        for key in keys:
            assert await client.get(key) == key.encode()
        # Twelve random keys all landing on one of three masters would be a 1-in-177k chance:
        # more than one owner proves the client routed by slot, not to a single node.
        owners = {client.get_node_from_key(key).name for key in keys}
        assert len(owners) > 1
    finally:
        await client.aclose()


# -- RabbitMQ ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rabbitmq() -> Iterator[RabbitMQServer]:
    with rabbitmq_server() as server:
        yield server


async def publish(url: str, queue_name: str, body: bytes) -> None:
    connection = await aio_pika.connect(url, timeout=10)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        await channel.declare_queue(queue_name, durable=True)
        message = aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
        await channel.default_exchange.publish(message, routing_key=queue_name)


async def consume_one(url: str, queue_name: str) -> bytes:
    connection = await aio_pika.connect(url, timeout=10)
    async with connection:
        channel = await connection.channel()
        queue = await channel.declare_queue(queue_name, durable=True)
        message = await wait_until_async(
            lambda: queue.get(fail=False), timeout=10, message=f"a message on {queue_name}"
        )
        await message.ack()
        return message.body


@pytest.mark.integration
async def test_rabbitmq_publish_consume(rabbitmq: RabbitMQServer) -> None:
    queue_name = unique("q")
    await publish(rabbitmq.url, queue_name, b"hello")
    assert await consume_one(rabbitmq.url, queue_name) == b"hello"


@pytest.mark.integration
async def test_rabbitmq_survives_restart(rabbitmq: RabbitMQServer) -> None:
    queue_name = unique("q")
    await publish(rabbitmq.url, queue_name, b"before")
    await restart_or_skip(rabbitmq)
    # Durable queue, persistent message, clean stop: it is still there.
    assert await consume_one(rabbitmq.url, queue_name) == b"before"
    await publish(rabbitmq.url, queue_name, b"after")
    assert await consume_one(rabbitmq.url, queue_name) == b"after"


# -- Kafka ---------------------------------------------------------------------------------


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
    topic = unique("t")
    await produce(kafka.bootstrap, topic, b"hello")
    assert await consume(kafka.bootstrap, topic, 1) == [b"hello"]


@pytest.mark.integration
async def test_kafka_produce_after_restart(kafka: KafkaServer) -> None:
    topic = unique("t")
    await produce(kafka.bootstrap, topic, b"before")
    await restart_or_skip(kafka)
    await produce(kafka.bootstrap, topic, b"after")
    # Same log dir: the record written before the restart is still there.
    assert await consume(kafka.bootstrap, topic, 2) == [b"before", b"after"]
