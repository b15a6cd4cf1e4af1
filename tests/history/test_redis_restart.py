"""History across a Redis restart, with two real gateways: with persistence a client recovers
(same epoch), without it the epoch changes and the client is told ``recovered: false``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from realtime.testing.flows import check_history_across_redis_restart
from realtime.testing.gateway import GatewayProcess, spawn_gateway
from realtime.testing.services import RedisServer, redis_server

pytestmark = pytest.mark.integration


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture
async def pair(
    own_redis: RedisServer, tmp_path: Path
) -> AsyncIterator[tuple[GatewayProcess, GatewayProcess]]:
    env = {
        "BROADCAST_MQ_TYPE": "redis",
        "PRESENCE_STORE": "redis",
        "REDIS_URL": own_redis.url,
        "HISTORY_CHANNELS": "hist-*",
    }
    async with spawn_gateway(env, str(tmp_path / "g1.log")) as g1:
        async with spawn_gateway(env, str(tmp_path / "g2.log")) as g2:
            yield g1, g2


@pytest.mark.parametrize("persistence", [True, False])
async def test_recovery_across_a_redis_restart(
    own_redis: RedisServer,
    pair: tuple[GatewayProcess, GatewayProcess],
    channel: str,
    persistence: bool,
) -> None:
    await check_history_across_redis_restart(*pair, own_redis, f"hist-{channel}", persistence)
