"""Without a Kafka listening: bounded failures, not-ready, clean close (warnings are errors)."""

from __future__ import annotations

import time

import pytest

from realtime.errors import BrokerError
from realtime.testing.waiting import free_port
from realtime.wire.messages import Kind
from realtime_kafka import KafkaBroker, KafkaConfig


async def ignore(kind: Kind, channel: str, data: bytes) -> None:
    pass


async def test_publish_without_kafka_raises_within_the_timeout() -> None:
    broker = KafkaBroker(KafkaConfig(bootstrap=(f"127.0.0.1:{free_port()}",), timeout=1.0))
    try:
        began = time.monotonic()
        with pytest.raises(BrokerError):
            await broker.publish("broadcast", "c", b"x")
        assert time.monotonic() - began < 5
        assert not broker.ready
    finally:
        await broker.close()
        await broker.close()


async def test_start_without_kafka_is_not_ready_and_closes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("realtime_kafka.broker.START_WAIT", 0.5)
    broker = KafkaBroker(KafkaConfig(bootstrap=(f"127.0.0.1:{free_port()}",), timeout=0.5))
    await broker.start(ignore)
    assert not broker.ready
    await broker.subscribe("broadcast", "c")
    await broker.close()
    assert not broker.ready
    with pytest.raises(BrokerError):
        await broker.publish("broadcast", "c", b"late")
