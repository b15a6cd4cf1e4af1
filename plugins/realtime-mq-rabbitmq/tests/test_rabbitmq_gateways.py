"""Two real gateway processes on one real RabbitMQ (broadcasts) and one Redis (presence)."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from realtime.testing.flows import (
    check_broadcasts_cross,
    check_concurrent_publishers,
    check_history_across_redis_restart,
    check_presence_crosses,
    check_recovery,
)
from realtime.testing.gateway import GatewayProcess, spawn_gateway, ws_client
from realtime.testing.services import RedisServer, RestartUnsupported, redis_server
from realtime.testing.waiting import wait_until_async
from realtime_rabbitmq.testing import RabbitMQServer

pytestmark = pytest.mark.integration


def rabbitmq_env(rabbitmq: RabbitMQServer, redis: RedisServer) -> dict[str, str]:
    return {
        "BROADCAST_MQ_TYPE": "rabbitmq",
        "BROADCAST_RABBITMQ_URL": rabbitmq.url,
        "BROADCAST_RABBITMQ_RECONNECT_SECONDS": "0.5",
        "PRESENCE_STORE": "redis",
        "REDIS_URL": redis.url,
        # Only hist-* channels keep history: the other tests see the seed's behaviour.
        "HISTORY_CHANNELS": "hist-*",
    }


@pytest.fixture
async def pair(
    rabbitmq: RabbitMQServer, rabbitmq_redis: RedisServer, tmp_path: Path
) -> AsyncIterator[tuple[GatewayProcess, GatewayProcess]]:
    env = rabbitmq_env(rabbitmq, rabbitmq_redis)
    async with spawn_gateway(env, str(tmp_path / "g1.log")) as g1:
        async with spawn_gateway(env, str(tmp_path / "g2.log")) as g2:
            yield g1, g2


async def test_broadcasts_cross_instances_both_ways(pair, room: str) -> None:  # type: ignore[no-untyped-def]
    # A plain name, and one that would be a wildcard binding if it were used as it is.
    for channel in (room, f"{room}.*"):
        await check_broadcasts_cross(*pair, channel)


async def test_a_client_cut_off_recovers_on_another_instance(pair, room: str) -> None:  # type: ignore[no-untyped-def]
    await check_recovery(*pair, f"hist-{room}")


async def test_a_client_whose_gateway_is_killed_recovers_on_another_instance(  # type: ignore[no-untyped-def]
    pair, room: str
) -> None:
    g1, g2 = pair
    await check_recovery(g1, g2, f"hist-{room}", kill_b=g2.process.kill)
    assert g2.process.wait(10) == -9  # SIGKILL: no drain, no goodbye


async def test_concurrent_publishers_on_two_instances_arrive_in_offset_order(  # type: ignore[no-untyped-def]
    pair, room: str
) -> None:
    await check_concurrent_publishers(*pair, f"hist-{room}")


async def test_presence_crosses_instances(pair, room: str) -> None:  # type: ignore[no-untyped-def]
    await check_presence_crosses(*pair, room)


async def _status(http: httpx.AsyncClient, url: str) -> int:
    return (await http.get(url + "/readyz")).status_code


async def test_readyz_follows_rabbitmq_and_delivery_resumes(
    pair,  # type: ignore[no-untyped-def]
    rabbitmq: RabbitMQServer,
    room: str,
) -> None:
    g1, g2 = pair
    async with (
        httpx.AsyncClient() as http,
        ws_client(g1.ws_url + "?user_id=one") as c1,
        ws_client(g2.ws_url + "?user_id=two") as c2,
    ):
        await c1.subscribe(room, "broadcast")
        await c2.subscribe(room, "broadcast")
        try:
            await asyncio.to_thread(rabbitmq.stop)
        except RestartUnsupported as exc:
            pytest.skip(str(exc))
        try:

            async def both_not_ready() -> bool:
                return all([await _status(http, g.url) == 503 for g in (g1, g2)])

            await wait_until_async(both_not_ready, timeout=30, interval=0.2, message="503")
            # A publish RabbitMQ cannot confirm is refused, never answered 200.
            refused = await http.post(g1.url + "/api/event", json={"channel": room}, timeout=30)
            assert refused.status_code == 503, refused.text
        finally:
            await asyncio.to_thread(rabbitmq.start)

        async def both_ready() -> bool:
            return all([await _status(http, g.url) == 200 for g in (g1, g2)])

        await wait_until_async(both_ready, timeout=45, interval=0.2, message="200 again")
        # The subscriptions made before the outage were restored on new queues.
        response = await http.post(
            g1.url + "/api/event", json={"channel": room, "event": "back", "payload": 1}
        )
        assert response.status_code == 200, response.text
        for client in (c1, c2):
            await client.expect("broadcast", event="back", payload=1, timeout=15)


async def test_frozen_rabbitmq_turns_readyz_red_within_the_probe_bound(
    pair,  # type: ignore[no-untyped-def]
    rabbitmq: RabbitMQServer,
) -> None:
    """SIGSTOP: the AMQP connection stays open, nothing answers (heartbeats would take a
    minute); the liveness probe (interval 1 s + timeout 2 s) turns /readyz red, and green
    again once RabbitMQ answers."""
    g1, _ = pair
    async with httpx.AsyncClient() as http:
        await wait_until_async(lambda: _is(http, g1.url, 200), timeout=45, interval=0.2)
        if not rabbitmq.processes:
            pytest.skip("RabbitMQ is not a process of ours")
        process = rabbitmq.processes[0]
        frozen = time.monotonic()
        process.send_signal(signal.SIGSTOP)
        try:
            await wait_until_async(
                lambda: _is(http, g1.url, 503), timeout=10, interval=0.1, message="red"
            )
            to_red = time.monotonic() - frozen
        finally:
            process.send_signal(signal.SIGCONT)
        await wait_until_async(
            lambda: _is(http, g1.url, 200), timeout=45, interval=0.2, message="green again"
        )
    # Interval + timeout, and room for a loaded machine.
    assert to_red <= 1 + 2 + 2, to_red


async def _is(http: httpx.AsyncClient, url: str, status: int) -> bool:
    return await _status(http, url) == status


@pytest.mark.parametrize("persistence", [True, False])
async def test_history_across_a_redis_restart(
    rabbitmq: RabbitMQServer, tmp_path: Path, room: str, persistence: bool
) -> None:
    # Its own Redis: it restarts. History lives there whatever MQ carries broadcasts.
    with redis_server() as own_redis:
        env = rabbitmq_env(rabbitmq, own_redis)
        async with (
            spawn_gateway(env, str(tmp_path / "g1.log")) as g1,
            spawn_gateway(env, str(tmp_path / "g2.log")) as g2,
        ):
            await check_history_across_redis_restart(g1, g2, own_redis, f"hist-{room}", persistence)
