"""History across two real gateway processes on one real Redis (broadcasts and history)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from realtime.testing.flows import check_concurrent_publishers, check_recovery
from realtime.testing.gateway import (
    GatewayProcess,
    make_settings,
    run_gateway,
    spawn_gateway,
    ws_client,
)
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
    await check_concurrent_publishers(*pair, f"hist-{channel}")


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


async def test_a_client_whose_gateway_is_killed_recovers_on_another_instance(  # type: ignore[no-untyped-def]
    pair, channel: str
) -> None:
    g1, g2 = pair
    await check_recovery(g1, g2, f"hist-{channel}", kill_b=g2.process.kill)
    assert g2.process.wait(10) == -9  # SIGKILL: no drain, no goodbye


async def test_history_trimmed_past_since_gives_recovered_false(
    redis: RedisServer, channel: str
) -> None:
    channel = f"hist-{channel}"
    settings = make_settings(
        BROADCAST_MQ_TYPE="redis",
        PRESENCE_STORE="redis",
        REDIS_URL=redis.url,
        HISTORY_CHANNELS="hist-*",
        HISTORY_SIZE="5",
    )
    async with run_gateway(settings) as gw, httpx.AsyncClient(base_url=gw.url) as http:
        async with ws_client(gw.ws_url + "?user_id=r") as client:
            await client.send(
                {"type": "subscribe", "channel": channel, "listen": ["broadcast"], "history": 0}
            )
            start = await client.expect("subscribed", channel=channel)
        # Away while 6 are published: history keeps 5, so the first one missed is gone.
        for n in range(6):
            await http.post("/api/event", json={"channel": channel, "payload": n})
        since = {"offset": start["offset"], "epoch": start["epoch"]}
        async with ws_client(gw.ws_url + "?user_id=r") as client:
            await client.send(
                {"type": "subscribe", "channel": channel, "listen": ["broadcast"], "since": since}
            )
            told = await client.expect("subscribed", channel=channel, recovered=False)
            assert (told["offset"], told["epoch"]) == (6, start["epoch"])
            # Nothing replayed: the next frame is the next live broadcast.
            await http.post("/api/event", json={"channel": channel, "payload": "live"})
            frame = await client.expect("broadcast", payload="live")
            assert frame["offset"] == 7
