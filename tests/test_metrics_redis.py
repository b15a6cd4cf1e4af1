"""/metrics on Redis: publish errors and reconnects around a Redis restart, and
``realtime serve --workers 2`` adding up its workers (prometheus-client's multiprocess mode)
while logging JSON from every process."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import httpx
import pytest

from realtime.testing.gateway import make_settings, run_gateway, spawn_gateway, ws_client
from realtime.testing.services import RedisServer
from realtime.testing.services.redis import native_redis
from realtime.testing.waiting import wait_until_async
from tests.server.test_metrics import parse, scrape, value

pytestmark = pytest.mark.integration


async def test_publish_errors_and_reconnects_around_a_redis_restart() -> None:
    with native_redis() as server:
        settings = make_settings(
            BROADCAST_MQ_TYPE="redis", PRESENCE_STORE="redis", REDIS_URL=server.url
        )
        async with (
            run_gateway(settings) as gw,
            httpx.AsyncClient(base_url=gw.url, timeout=15) as http,
        ):
            before = await scrape(gw)
            server.kill()
            body = {"channel": "metrics.down", "event": "e", "payload": 1}
            assert (await http.post("/api/event", json=body)).status_code == 503
            after = await scrape(gw)
            errors = "realtime_broker_publish_errors_total"
            assert (
                value(after, errors, kind="broadcast") - value(before, errors, kind="broadcast")
                == 1
            )
            await asyncio.to_thread(server.start)

            async def reconnected() -> bool:
                now = await scrape(gw)
                name = "realtime_broker_reconnects_total"
                return value(now, name, broker="redis") > value(before, name, broker="redis")

            await wait_until_async(reconnected, 15, message="a reconnect counted")
            assert (await http.post("/api/event", json=body)).status_code == 200


async def test_workers_add_up_and_log_json(redis: RedisServer, tmp_path: Path) -> None:
    env = {
        "BROADCAST_MQ_TYPE": "redis",
        "PRESENCE_STORE": "redis",
        "REDIS_URL": redis.url,
        "LOG_FORMAT": "json",
    }
    log_path = tmp_path / "gateway.log"
    async with spawn_gateway(env, str(log_path), args=["--workers", "2"]) as gw:

        def instances() -> set[str]:
            return {
                record["instance"]
                for record in map(json.loads, gw.log().splitlines())
                if record.get("event") == "ws_open"
            }

        async with contextlib.AsyncExitStack() as stack:
            # The kernel spreads connections over the workers: open until both took some.
            opened = 0
            while len(instances()) < 2:
                assert opened < 40, "40 connections all landed on one worker"
                await stack.enter_async_context(ws_client(gw.ws_url + f"?user_id=u{opened}"))
                opened += 1
                # Each open line is written before the next connection is made.
                await wait_until_async(
                    lambda n=opened: gw.log().count('"ws_open"') == n, 5, message="open line"
                )
            async with httpx.AsyncClient(base_url=gw.url) as http:
                # Whichever worker answers, it reports both workers' connections.
                for _ in range(8):
                    samples = parse((await http.get("/metrics")).text)
                    assert value(samples, "realtime_connections") == opened
                    assert value(samples, "realtime_connections_opened_total") == opened
        async with httpx.AsyncClient(base_url=gw.url) as http:

            async def all_closed() -> bool:
                samples = parse((await http.get("/metrics")).text)
                closed = sum(
                    v
                    for (name, _), v in samples.items()
                    if name == "realtime_connections_closed_total"
                )
                return value(samples, "realtime_connections") == 0 and closed == opened

            await wait_until_async(all_closed, 10, message="every close counted")
    # Every line of both workers and the parent is one JSON object.
    lines = [line for line in log_path.read_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]
    assert any(r["logger"] == "realtime" for r in records)
    closes = [r for r in records if r.get("event") == "ws_closed"]
    assert len(closes) == opened
    assert {r["instance"] for r in closes} == instances()
