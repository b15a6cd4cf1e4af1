from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from realtime.testing.services import RedisServer, redis_server

# The example plugin's own tests run inside the throwaway environment that installs it
# (tests/brokers/test_third_party_plugin.py), not in this one.
collect_ignore = ["example_plugin"]


@pytest.fixture(scope="session")
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture
def channel() -> str:
    """A channel name no other test uses, so tests sharing one Redis stay apart."""
    return f"room-{uuid.uuid4().hex[:12]}"
