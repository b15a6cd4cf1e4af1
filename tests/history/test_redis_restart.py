"""History across a Redis restart, with two real gateways: with persistence a client recovers
(same epoch), without it the epoch changes and the client is told ``recovered: false``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from realtime.testing.gateway import GatewayProcess, spawn_gateway, ws_client
from realtime.testing.services import RedisServer, RestartUnsupported, redis_server
from realtime.testing.waiting import wait_until_async

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


async def post(http: httpx.AsyncClient, gateway: GatewayProcess, channel: str, n: int) -> bool:
    try:
        response = await http.post(
            gateway.url + "/api/event", json={"channel": channel, "payload": n}
        )
    except httpx.HTTPError:
        return False
    return response.status_code == 200


@pytest.mark.parametrize("persistence", [True, False])
async def test_recovery_across_a_redis_restart(
    own_redis: RedisServer,
    pair: tuple[GatewayProcess, GatewayProcess],
    channel: str,
    persistence: bool,
) -> None:
    g1, g2 = pair
    channel = f"hist-{channel}"
    last: dict[str, Any] = {}
    async with httpx.AsyncClient(timeout=10) as http:
        async with ws_client(g2.ws_url + "?user_id=r") as client:
            await client.subscribe(channel, "broadcast")
            for n in range(5):
                assert await post(http, g1, channel, n)
            for _ in range(2):
                frame = await client.expect("broadcast")
                last = {"offset": frame["offset"], "epoch": frame["epoch"]}
        admin = aioredis.Redis.from_url(own_redis.url)
        if persistence:
            await admin.save()  # the snapshot a persistent Redis reloads at start
        await admin.aclose()
        try:
            own_redis.restart()
        except RestartUnsupported as exc:
            pytest.skip(str(exc))
        published = [5]

        async def published_after_restart() -> bool:
            if await post(http, g1, channel, published[0]):
                published[0] += 1
                return True
            return False

        await wait_until_async(published_after_restart, timeout=30, interval=0.2)
        async with ws_client(g1.ws_url + "?user_id=r") as client:
            await client.send(
                {"type": "subscribe", "channel": channel, "listen": ["broadcast"], "since": last}
            )
            subscribed = await client.expect("subscribed", channel=channel)
            if persistence:
                assert subscribed["recovered"] is True
                assert subscribed["epoch"] == last["epoch"] and subscribed["offset"] == 6
                frames = [await client.expect("broadcast") for _ in range(4)]
                assert [f["payload"] for f in frames] == [2, 3, 4, 5]
                assert [f["offset"] for f in frames] == [3, 4, 5, 6]
            else:
                assert subscribed["recovered"] is False
                assert subscribed["epoch"] != last["epoch"] and subscribed["offset"] == 1
            assert await post(http, g1, channel, 99)
            frame = await client.expect("broadcast", payload=99)
            assert (frame["offset"], frame["epoch"]) == (
                subscribed["offset"] + 1,
                subscribed["epoch"],
            )
