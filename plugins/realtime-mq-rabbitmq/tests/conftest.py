"""One RabbitMQ (and one Redis) for every test of this plugin: starting RabbitMQ takes seconds."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from realtime.testing.services import RedisServer, redis_server
from realtime_rabbitmq.testing import RabbitMQServer, rabbitmq_server


@pytest.fixture(scope="session")
def rabbitmq() -> Iterator[RabbitMQServer]:
    # Its own server: the restart cases stop it.
    with rabbitmq_server() as server:
        yield server


@pytest.fixture(scope="session")
def rabbitmq_redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture
def room() -> str:
    return f"room-{uuid.uuid4().hex[:12]}"
