"""Two real gateway processes on one real Kafka (broadcasts) and one Redis (presence)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from realtime.testing.gateway import GatewayProcess, spawn_gateway, ws_client
from realtime.testing.servers import (
    KafkaServer,
    RedisServer,
    RestartUnsupported,
    kafka_server,
    redis_server,
    wait_until_async,
)

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


@pytest.fixture
async def pair(
    kafka: KafkaServer, redis: RedisServer, tmp_path: Path
) -> AsyncIterator[tuple[GatewayProcess, GatewayProcess]]:
    env = {
        "BROADCAST_MQ_TYPE": "kafka",
        "BROADCAST_MQ_ADDR": kafka.bootstrap,
        "BROADCAST_KAFKA_TOPIC": f"gateways-{uuid.uuid4().hex[:8]}",
        "BROADCAST_KAFKA_PARTITIONS": "3",
        "BROADCAST_KAFKA_TIMEOUT_SECONDS": "3",
        "BROADCAST_KAFKA_HEALTH_INTERVAL_SECONDS": "0.5",
        "PRESENCE_STORE": "redis",
        "REDIS_URL": redis.url,
    }
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
    g1, g2 = pair
    async with (
        ws_client(g1.ws_url + "?user_id=one") as c1,
        ws_client(g2.ws_url + "?user_id=two") as c2,
    ):
        await c1.subscribe(channel, "broadcast")
        await c2.subscribe(channel, "broadcast")
        await c1.send({"type": "broadcast", "channel": channel, "event": "e1", "payload": {"n": 1}})
        for client in (c1, c2):
            await client.expect("broadcast", event="e1", user_id="one", payload={"n": 1})
        await c2.send({"type": "broadcast", "channel": channel, "event": "e2", "payload": [2]})
        for client in (c1, c2):
            await client.expect("broadcast", event="e2", user_id="two", payload=[2])
        assert await post_event(g2, channel, "h") == 200
        for client in (c1, c2):
            frame = await client.expect("broadcast", event="h", payload="x")
            assert "user_id" not in frame


async def test_presence_crosses_instances(pair, channel: str) -> None:  # type: ignore[no-untyped-def]
    g1, g2 = pair
    async with ws_client(g1.ws_url + "?user_id=watcher") as watcher:
        assert (await watcher.subscribe(channel))["users"] == []  # type: ignore[index]
        async with ws_client(g2.ws_url + "?user_id=bob") as bob:
            await bob.request(
                {"type": "presence_join", "channel": channel, "payload": {"n": "Bob"}}
            )
            await watcher.expect("presence_join", user_id="bob", meta={"n": "Bob"})
            await bob.send(
                {"type": "presence_update", "channel": channel, "payload": {"s": "away"}}
            )
            await watcher.expect("presence_update", user_id="bob", meta={"s": "away"})
            async with ws_client(g1.ws_url + "?user_id=late") as late:
                sync = await late.subscribe(channel, "presence")
                assert sync is not None
                assert [(u["user_id"], u["meta"]) for u in sync["users"]] == [
                    ("bob", {"s": "away"})
                ]
            await bob.send({"type": "presence_leave", "channel": channel})
            await watcher.expect("presence_leave", user_id="bob")


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
