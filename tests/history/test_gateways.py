"""History across two real gateway processes on one real Redis (broadcasts and history)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from realtime.testing.flows import check_recovery
from realtime.testing.gateway import GatewayProcess, spawn_gateway, ws_client
from realtime.testing.services import RedisServer

pytestmark = pytest.mark.integration


@pytest.fixture
async def pair(
    redis: RedisServer, tmp_path: Path
) -> AsyncIterator[tuple[GatewayProcess, GatewayProcess]]:
    env = {
        "BROADCAST_MQ_TYPE": "redis",
        "PRESENCE_STORE": "redis",
        "REDIS_URL": redis.url,
        "HISTORY_CHANNELS": "hist-*",
    }
    async with spawn_gateway(env, str(tmp_path / "g1.log")) as g1:
        async with spawn_gateway(env, str(tmp_path / "g2.log")) as g2:
            yield g1, g2


async def test_a_client_cut_off_recovers_on_another_instance(pair, channel: str) -> None:  # type: ignore[no-untyped-def]
    await check_recovery(*pair, f"hist-{channel}")


async def test_a_channel_without_history_is_unchanged(pair, channel: str) -> None:  # type: ignore[no-untyped-def]
    g1, g2 = pair
    async with ws_client(g1.ws_url + "?user_id=a") as a, ws_client(g2.ws_url + "?user_id=b") as b:
        await a.subscribe(channel, "broadcast")
        await b.send({"type": "broadcast", "channel": channel, "payload": 1, "ref": 1})
        assert await b.recv() == {"type": "ack", "ref": 1}
        frame = await a.expect("broadcast")
        assert set(frame) == {"type", "channel", "event", "payload", "user_id", "ts"}


async def test_concurrent_publishers_on_two_instances_arrive_in_offset_order(
    pair,  # type: ignore[no-untyped-def]
    channel: str,
) -> None:
    g1, g2 = pair
    channel = f"hist-{channel}"
    count, publishers = 200, 8
    async with (
        ws_client(g1.ws_url + "?user_id=a") as a,
        ws_client(g2.ws_url + "?user_id=b") as b,
        httpx.AsyncClient(timeout=30) as http,
    ):
        await a.subscribe(channel, "broadcast")
        await b.subscribe(channel, "broadcast")

        async def publish(k: int) -> None:
            # Half of the publishers on each instance, all at once.
            target = (g1, g2)[k % 2]
            for n in range(k, count, publishers):
                response = await http.post(
                    target.url + "/api/event", json={"channel": channel, "payload": n}
                )
                assert response.status_code == 200, response.text

        await asyncio.gather(*(publish(k) for k in range(publishers)))
        for client in (a, b):
            frames = [await client.recv() for _ in range(count)]
            assert [f["type"] for f in frames] == ["broadcast"] * count
            assert [f["offset"] for f in frames] == list(range(1, count + 1))
            assert sorted(f["payload"] for f in frames) == list(range(count))


async def test_a_retry_sent_to_the_other_instance_is_published_once(pair, channel: str) -> None:  # type: ignore[no-untyped-def]
    g1, g2 = pair
    channel = f"hist-{channel}"
    event = {"channel": channel, "payload": "once"}
    key = {"idempotency-key": f"retry-{channel}"}
    async with httpx.AsyncClient(timeout=30, headers=key) as http:
        first = await http.post(g1.url + "/api/event", json=event)
        retry = await http.post(g2.url + "/api/event", json=event)
        assert retry.json() == first.json() and retry.headers["idempotent-replayed"] == "true"
        del http.headers["idempotency-key"]
        after = await http.post(g2.url + "/api/event", json=event)
    assert (first.json()["offset"], after.json()["offset"]) == (1, 2)
