"""Two real gateway processes on one real Redis, a client on each: every message flows both ways."""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from realtime.testing.flows import check_broadcasts_cross, check_presence_crosses
from realtime.testing.gateway import GatewayProcess, spawn_gateway, ws_client
from realtime.testing.services import RedisServer
from realtime.testing.waiting import wait_until_async

pytestmark = pytest.mark.integration


def redis_env(redis: RedisServer, **extra: str) -> dict[str, str]:
    return {
        "BROADCAST_MQ_TYPE": "redis",
        "PRESENCE_STORE": "redis",
        "REDIS_URL": redis.url,
        **extra,
    }


@pytest.fixture
async def pair(
    redis: RedisServer, tmp_path: Path
) -> AsyncIterator[tuple[GatewayProcess, GatewayProcess]]:
    env = redis_env(redis)
    async with spawn_gateway(env, str(tmp_path / "g1.log")) as g1:
        async with spawn_gateway(env, str(tmp_path / "g2.log")) as g2:
            yield g1, g2


async def test_broadcasts_cross_instances_both_ways(pair, channel: str) -> None:  # type: ignore[no-untyped-def]
    await check_broadcasts_cross(*pair, channel)


async def test_presence_crosses_instances(pair, channel: str) -> None:  # type: ignore[no-untyped-def]
    await check_presence_crosses(*pair, channel)


async def test_message_from_a_seed_gateway_reaches_clients(
    redis: RedisServer,
    pair,
    channel: str,  # type: ignore[no-untyped-def]
) -> None:
    g1, _ = pair
    seed = aioredis.Redis.from_url(redis.url)
    try:
        async with ws_client(g1.ws_url + "?user_id=a") as a:
            await a.subscribe(channel)
            # Exactly what the Go seed's encoder writes.
            await seed.publish(
                f"broadcast.{channel}",
                json.dumps(
                    {
                        "type": "broadcast",
                        "channel_id": channel,
                        "user_id": "go",
                        "event": "e",
                        "payload": {"v": 1},
                        "meta": {"user_id": "", "meta": None, "updated_at": 0},
                        "ts": 1700000000000,
                    }
                ),
            )
            await a.expect("broadcast", user_id="go", payload={"v": 1}, ts=1700000000000)
            await seed.publish(
                f"presence.{channel}",
                json.dumps(
                    {
                        "type": "presence_join",
                        "channel_id": channel,
                        "user_id": "go",
                        "meta": {"user_id": "go", "meta": {"k": 1}, "updated_at": 5},
                        "ts": 1700000000001,
                    }
                ),
            )
            await a.expect("presence_join", user_id="go", meta={"k": 1}, updated_at=5)
    finally:
        await seed.aclose()


async def test_live_members_never_expire(redis: RedisServer, tmp_path: Path, channel: str) -> None:
    raw = aioredis.Redis.from_url(redis.url)
    env = redis_env(redis, PRESENCE_TTL_SECONDS="2")
    try:
        async with spawn_gateway(env, str(tmp_path / "g.log")) as g:
            async with ws_client(g.ws_url + "?user_id=stayer") as stayer:
                await stayer.request({"type": "presence_join", "channel": channel, "payload": {}})
                first = await raw.zscore(f"{{presence:{channel}}}:expiry", "stayer")
                assert first is not None

                # Wait until the gateway has refreshed it well past the first expiry.
                async def refreshed_past_first_ttl() -> bool:
                    score = await raw.zscore(f"{{presence:{channel}}}:expiry", "stayer")
                    return score is not None and score > first + 2

                await wait_until_async(refreshed_past_first_ttl, timeout=10, interval=0.2)
                async with ws_client(g.ws_url + "?user_id=w") as w:
                    sync = await w.subscribe(channel, "presence")
                    assert [u["user_id"] for u in sync["users"]] == ["stayer"]  # type: ignore[index]
    finally:
        await raw.aclose()


async def test_members_of_a_killed_instance_drop_out_of_sync(
    redis: RedisServer, tmp_path: Path, channel: str
) -> None:
    env = redis_env(redis, PRESENCE_TTL_SECONDS="1")
    async with spawn_gateway(env, str(tmp_path / "g1.log")) as g1:
        async with spawn_gateway(env, str(tmp_path / "g2.log")) as g2:
            async with ws_client(g2.ws_url + "?user_id=doomed") as doomed:
                await doomed.request({"type": "presence_join", "channel": channel, "payload": {}})
                os.kill(g2.process.pid, signal.SIGKILL)
                g2.process.wait(5)

            async def gone() -> bool:
                async with ws_client(g1.ws_url + "?user_id=w") as w:
                    sync = await w.subscribe(channel, "presence")
                    return sync is not None and sync["users"] == []

            await wait_until_async(gone, timeout=10, interval=0.3)


async def test_workers_share_the_port_as_instances(
    redis: RedisServer, tmp_path: Path, channel: str
) -> None:
    async with spawn_gateway(
        redis_env(redis), str(tmp_path / "w.log"), args=["--workers", "2"]
    ) as gw:
        children = Path(f"/proc/{gw.process.pid}/task/{gw.process.pid}/children")

        def workers() -> int:
            # uvicorn's workers are multiprocessing spawns (its resource tracker is not).
            pids = children.read_text().split()
            return sum(b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes() for pid in pids)

        await wait_until_async(lambda: workers() == 2, timeout=20, ignore=(OSError,))
        clients = []
        async with contextlib.AsyncExitStack() as stack:
            for i in range(16):
                client = await stack.enter_async_context(ws_client(gw.ws_url + f"?user_id=u{i}"))
                await client.subscribe(channel, "broadcast")
                clients.append(client)
            async with httpx.AsyncClient() as http:
                response = await http.post(gw.url + "/api/event", json={"channel": channel})
                assert response.status_code == 200
            for client in clients:
                await client.expect("broadcast", channel=channel)


async def test_an_instance_subscribes_only_the_channels_it_serves(
    redis: RedisServer, tmp_path: Path, channel: str
) -> None:
    raw = aioredis.Redis.from_url(redis.url)

    async def upstream() -> set[bytes]:
        names = await raw.pubsub_channels(f"*{channel}*")
        return set(names)

    async def dropped() -> bool:
        return await upstream() == set()

    try:
        async with spawn_gateway(redis_env(redis), str(tmp_path / "g.log")) as gw:
            assert await upstream() == set()
            async with ws_client(gw.ws_url + "?user_id=a") as a:
                await a.subscribe(channel, "broadcast")
                assert await upstream() == {f"broadcast.{channel}".encode()}
                await a.subscribe(channel)  # now presence too
                assert await upstream() == {
                    f"broadcast.{channel}".encode(),
                    f"presence.{channel}".encode(),
                }
                await a.request({"type": "unsubscribe", "channel": channel})
                # Redis has the unsubscribe once it read it from the subscriber connection.
                await wait_until_async(dropped, timeout=5)
            async with ws_client(gw.ws_url + "?user_id=b") as b:
                await b.subscribe(channel, "broadcast")

            # the last local subscriber went away: the instance drops the channel upstream
            await wait_until_async(dropped, timeout=5)
    finally:
        await raw.aclose()
