"""Two real gateway processes on one real Kafka (broadcasts) and one Redis (presence)."""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator
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
from realtime_kafka.testing import KafkaServer, kafka_server

pytestmark = pytest.mark.integration
RECOVERY = 90.0


@pytest.fixture(scope="module")
def kafka() -> Iterator[KafkaServer]:
    # Its own server: the readiness test stops it.
    with kafka_server() as server:
        yield server


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.fixture
def channel() -> str:
    return f"room-{uuid.uuid4().hex[:12]}"


def kafka_env(kafka: KafkaServer, redis: RedisServer) -> dict[str, str]:
    return {
        "BROADCAST_MQ_TYPE": "kafka",
        "BROADCAST_MQ_ADDR": kafka.bootstrap,
        "BROADCAST_KAFKA_TOPIC": f"gateways-{uuid.uuid4().hex[:8]}",
        "BROADCAST_KAFKA_PARTITIONS": "3",
        "BROADCAST_KAFKA_TIMEOUT_SECONDS": "3",
        "BROADCAST_KAFKA_HEALTH_INTERVAL_SECONDS": "0.5",
        "PRESENCE_STORE": "redis",
        "REDIS_URL": redis.url,
        # Only hist-* channels keep history: the other tests see the seed's behaviour.
        "HISTORY_CHANNELS": "hist-*",
    }


@pytest.fixture
async def pair(
    kafka: KafkaServer, redis: RedisServer, tmp_path: Path
) -> AsyncIterator[tuple[GatewayProcess, GatewayProcess]]:
    env = kafka_env(kafka, redis)
    async with spawn_gateway(env, str(tmp_path / "g1.log")) as g1:
        async with spawn_gateway(env, str(tmp_path / "g2.log")) as g2:
            yield g1, g2


async def post_event(gateway: GatewayProcess, channel: str, event: str) -> int:
    async with httpx.AsyncClient(timeout=30) as http:
        response = await http.post(
            gateway.url + "/api/event", json={"channel": channel, "event": event, "payload": "x"}
        )
        return response.status_code


async def readyz_is(gateway: GatewayProcess, expected: int) -> bool:
    async with httpx.AsyncClient(timeout=10) as http:
        return (await http.get(gateway.url + "/readyz")).status_code == expected


async def event_is(gateway: GatewayProcess, channel: str, event: str, expected: int) -> bool:
    return await post_event(gateway, channel, event) == expected


async def test_broadcasts_cross_instances_both_ways(pair, channel: str) -> None:  # type: ignore[no-untyped-def]
    await check_broadcasts_cross(*pair, channel)


async def test_a_client_cut_off_recovers_on_another_instance(pair, channel: str) -> None:  # type: ignore[no-untyped-def]
    await check_recovery(*pair, f"hist-{channel}")


async def test_a_client_whose_gateway_is_killed_recovers_on_another_instance(  # type: ignore[no-untyped-def]
    pair, channel: str
) -> None:
    g1, g2 = pair
    await check_recovery(g1, g2, f"hist-{channel}", kill_b=g2.process.kill)
    assert g2.process.wait(10) == -9  # SIGKILL: no drain, no goodbye


async def test_concurrent_publishers_on_two_instances_arrive_in_offset_order(  # type: ignore[no-untyped-def]
    pair, channel: str
) -> None:
    await check_concurrent_publishers(*pair, f"hist-{channel}")


async def test_presence_crosses_instances(pair, channel: str) -> None:  # type: ignore[no-untyped-def]
    await check_presence_crosses(*pair, channel)


async def test_readyz_follows_kafka(pair, kafka: KafkaServer, channel: str) -> None:  # type: ignore[no-untyped-def]
    g1, g2 = pair
    try:
        kafka.stop()
    except RestartUnsupported as exc:
        pytest.skip(str(exc))
    try:
        for gateway in (g1, g2):
            await wait_until_async(
                lambda g=gateway: readyz_is(g, 503),
                timeout=RECOVERY,
                interval=0.2,
                message="/readyz 503 while Kafka is down",
            )
        # A publish Kafka did not take is never a 200.
        assert await post_event(g1, channel, "lost") == 503
    finally:
        kafka.start()
    for gateway in (g1, g2):
        await wait_until_async(
            lambda g=gateway: readyz_is(g, 200),
            timeout=RECOVERY,
            interval=0.2,
            message="/readyz 200 after Kafka returned",
        )
    # And messages flow again, across instances, without anyone's help.
    async with ws_client(g2.ws_url + "?user_id=after") as client:
        await client.subscribe(channel, "broadcast")
        await wait_until_async(
            lambda: event_is(g1, channel, "back", 200), timeout=RECOVERY, interval=0.5
        )
        await client.expect("broadcast", event="back", timeout=30)


async def test_frozen_kafka_turns_readyz_red_within_the_probe_bound(
    pair, kafka: KafkaServer
) -> None:  # type: ignore[no-untyped-def]
    """SIGSTOP: the connections stay open, nothing answers; only the liveness probe (default
    interval 1 s + timeout 2 s) tells, and /readyz is green again once Kafka answers."""
    g1, _ = pair
    await wait_until_async(lambda: readyz_is(g1, 200), timeout=RECOVERY, interval=0.2)
    if not kafka.processes:
        pytest.skip("Kafka is not a process of ours")
    process = kafka.processes[0]
    frozen = time.monotonic()
    process.send_signal(signal.SIGSTOP)
    try:
        await wait_until_async(
            lambda: readyz_is(g1, 503), timeout=10, interval=0.1, message="red while frozen"
        )
        to_red = time.monotonic() - frozen
    finally:
        process.send_signal(signal.SIGCONT)
    await wait_until_async(
        lambda: readyz_is(g1, 200), timeout=RECOVERY, interval=0.2, message="green after SIGCONT"
    )
    # Interval + timeout, and room for a loaded machine.
    assert to_red <= 1 + 2 + 2, to_red


@pytest.mark.parametrize("persistence", [True, False])
async def test_history_across_a_redis_restart(
    kafka: KafkaServer, tmp_path: Path, channel: str, persistence: bool
) -> None:
    # Its own Redis: it restarts. History lives there whatever MQ carries broadcasts.
    with redis_server() as own_redis:
        env = kafka_env(kafka, own_redis)
        async with (
            spawn_gateway(env, str(tmp_path / "g1.log")) as g1,
            spawn_gateway(env, str(tmp_path / "g2.log")) as g2,
        ):
            await check_history_across_redis_restart(
                g1, g2, own_redis, f"hist-{channel}", persistence
            )
