"""realtime_rabbitmq.testing: the plugin's RabbitMQ launcher, against the server it starts."""

from __future__ import annotations

import asyncio
import uuid
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import aiormq.exceptions
import pytest

from realtime.testing.services import RestartUnsupported
from realtime.testing.waiting import free_port, wait_until_async
from realtime_rabbitmq.testing import RabbitMQServer, login_works, rabbitmq_server


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def test_a_server_from_the_environment_cannot_be_restarted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RABBITMQ_URL", "amqp://u:p@example.invalid:5673/")
    with rabbitmq_server() as server:
        assert (server.kind, server.host, server.port) == ("env", "example.invalid", 5673)
        with pytest.raises(RestartUnsupported):
            server.restart()


def test_the_login_probe_fails_where_nothing_listens() -> None:
    with pytest.raises((OSError, aiormq.exceptions.AMQPError)):
        login_works(f"amqp://guest:guest@127.0.0.1:{free_port()}/", timeout=2)


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
def test_the_login_probe_checks_the_credentials(rabbitmq: RabbitMQServer) -> None:
    assert login_works(rabbitmq.url)
    parts = urlsplit(rabbitmq.url)
    wrong = parts._replace(netloc=f"guest:wrong@{parts.hostname}:{parts.port}")
    with pytest.raises(aiormq.exceptions.AMQPError):
        login_works(urlunsplit(wrong))


@pytest.mark.integration
async def test_rabbitmq_publish_consume(rabbitmq: RabbitMQServer) -> None:
    queue_name = unique("q")
    await publish(rabbitmq.url, queue_name, b"hello")
    assert await consume_one(rabbitmq.url, queue_name) == b"hello"


@pytest.mark.integration
async def test_rabbitmq_survives_restart(rabbitmq: RabbitMQServer) -> None:
    queue_name, port = unique("q"), rabbitmq.port
    await publish(rabbitmq.url, queue_name, b"before")
    try:
        # In a thread: a restart blocks for seconds, and the test's event loop must not.
        await asyncio.to_thread(rabbitmq.restart)
    except RestartUnsupported as exc:
        pytest.skip(str(exc))
    assert rabbitmq.port == port
    # Durable queue, persistent message, clean stop: it is still there.
    assert await consume_one(rabbitmq.url, queue_name) == b"before"
    await publish(rabbitmq.url, queue_name, b"after")
    assert await consume_one(rabbitmq.url, queue_name) == b"after"


@pytest.mark.integration
def test_rabbitmqctl_reaches_the_native_node(rabbitmq: RabbitMQServer) -> None:
    if rabbitmq.kind != "native":
        pytest.skip("rabbitmqctl needs the node we started")
    done = rabbitmq.ctl("status")
    assert done.returncode == 0, done.stderr
    assert rabbitmq.nodename.encode() in done.stdout
