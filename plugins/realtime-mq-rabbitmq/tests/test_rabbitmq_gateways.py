"""Two real gateway processes on one real RabbitMQ (broadcasts) and one Redis (presence)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from realtime.testing.gateway import GatewayProcess, spawn_gateway, ws_client
from realtime.testing.servers import (
    RabbitMQServer,
    RedisServer,
    RestartUnsupported,
    wait_until_async,
)

pytestmark = pytest.mark.integration


def rabbitmq_env(rabbitmq: RabbitMQServer, redis: RedisServer) -> dict[str, str]:
    return {
        "BROADCAST_MQ_TYPE": "rabbitmq",
        "BROADCAST_RABBITMQ_URL": rabbitmq.url,
        "BROADCAST_RABBITMQ_RECONNECT_SECONDS": "0.5",
        "PRESENCE_STORE": "redis",
        "REDIS_URL": redis.url,
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
    g1, g2 = pair
    # A plain name, and one that would be a wildcard binding if it were used as it is.
    for channel in (room, f"{room}.*"):
        async with (
            ws_client(g1.ws_url + "?user_id=one") as c1,
            ws_client(g2.ws_url + "?user_id=two") as c2,
        ):
            await c1.subscribe(channel, "broadcast")
            await c2.subscribe(channel, "broadcast")
            await c1.send(
                {"type": "broadcast", "channel": channel, "event": "e1", "payload": {"n": 1}}
            )
            for client in (c1, c2):
                await client.expect(
                    "broadcast", channel=channel, event="e1", user_id="one", payload={"n": 1}
                )
            await c2.send({"type": "broadcast", "channel": channel, "event": "e2", "payload": [2]})
            for client in (c1, c2):
                await client.expect("broadcast", event="e2", user_id="two", payload=[2])
            async with httpx.AsyncClient() as http:
                response = await http.post(
                    g2.url + "/api/event", json={"channel": channel, "event": "h", "payload": "x"}
                )
                assert response.status_code == 200, response.text
            for client in (c1, c2):
                frame = await client.expect("broadcast", channel=channel, event="h", payload="x")
                assert "user_id" not in frame


async def test_presence_crosses_instances(pair, room: str) -> None:  # type: ignore[no-untyped-def]
    g1, g2 = pair
    async with ws_client(g1.ws_url + "?user_id=watcher") as watcher:
        assert (await watcher.subscribe(room))["users"] == []  # type: ignore[index]
        async with ws_client(g2.ws_url + "?user_id=bob") as bob:
            await bob.request({"type": "presence_join", "channel": room, "payload": {"n": "Bob"}})
            await watcher.expect("presence_join", user_id="bob", meta={"n": "Bob"})
            await bob.send({"type": "presence_update", "channel": room, "payload": {"s": "away"}})
            await watcher.expect("presence_update", user_id="bob", meta={"s": "away"})
            async with ws_client(g1.ws_url + "?user_id=late") as late:
                sync = await late.subscribe(room, "presence")
                assert sync is not None
                assert [(u["user_id"], u["meta"]) for u in sync["users"]] == [
                    ("bob", {"s": "away"})
                ]
            await bob.send({"type": "presence_leave", "channel": room})
            await watcher.expect("presence_leave", user_id="bob")
            await bob.request({"type": "presence_join", "channel": room, "payload": {}})
            await watcher.expect("presence_join", user_id="bob")
        # bob's connection closed: his gateway removes him and says so.
        await watcher.expect("presence_leave", user_id="bob")
        async with ws_client(g2.ws_url + "?user_id=late") as late:
            assert (await late.subscribe(room, "presence"))["users"] == []  # type: ignore[index]


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
