"""Lifecycle without a reachable RabbitMQ: start never blocks the gateway, close is clean."""

from __future__ import annotations

import time

import pytest

from realtime.errors import BrokerError
from realtime.testing import Inbox
from realtime.testing.waiting import free_port
from realtime_rabbitmq import RabbitMQBroker, RabbitMQOptions
from realtime_rabbitmq import broker as broker_module


async def test_start_against_nothing_returns_not_ready_and_closes_cleanly(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(broker_module, "START_WAIT", 0.5)
    url = f"amqp://guest:guest@127.0.0.1:{free_port()}/"  # nothing listens there
    broker = RabbitMQBroker(RabbitMQOptions(url=url, reconnect_interval=0.1))
    began = time.monotonic()
    await broker.start(Inbox())
    assert time.monotonic() - began < 5
    assert not broker.ready
    await broker.subscribe("broadcast", "room")  # recorded for when RabbitMQ answers
    began = time.monotonic()
    with pytest.raises(BrokerError, match="not connected"):
        await broker.publish("broadcast", "room", b"x")
    assert time.monotonic() - began < 1  # refused at once, not after a timeout
    await broker.close()
    await broker.close()
    with pytest.raises(BrokerError, match="closed"):
        await broker.publish("broadcast", "room", b"x")


async def test_publish_before_start_and_after_close_raises() -> None:
    broker = RabbitMQBroker(RabbitMQOptions(url="amqp://127.0.0.1/"))
    with pytest.raises(BrokerError):
        await broker.publish("broadcast", "c", b"x")
    await broker.close()
    await broker.close()
    with pytest.raises(BrokerError):
        await broker.publish("broadcast", "c", b"x")
    with pytest.raises(BrokerError):
        await broker.start(Inbox())
