"""realtime.js across a gateway restart, on Redis: the page reconnects by itself, subscribes
again, joins presence again with the same meta, and recovers with `since` what was published
on a history channel while it was away, exactly once."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser

from realtime.testing.browser import Shots
from realtime.testing.gateway import spawn_gateway
from realtime.testing.services import RedisServer
from realtime.testing.waiting import free_port
from tests.browser.client_page import open_client

pytestmark = pytest.mark.integration


async def post(base: str, channel: str, payload: object) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(
            base + "/api/event", json={"channel": channel, "event": "news", "payload": payload}
        )
        assert response.status_code == 200, response.text
        assert "offset" in response.json()  # a history channel


async def test_the_page_reconnects_resubscribes_and_recovers_after_a_restart(
    browser: Browser, shots: Shots, redis: RedisServer, tmp_path: Path, channel: str
) -> None:
    env = {
        "BROADCAST_MQ_TYPE": "redis",
        "PRESENCE_STORE": "redis",
        "REDIS_URL": redis.url,
        "HISTORY_CHANNELS": "hist-*",
        "SHUTDOWN_DRAIN_SECONDS": "1",
    }
    name = f"hist-{channel}"
    port = free_port()  # the page's gateway comes back on the same address
    async with spawn_gateway(env, str(tmp_path / "g2.log")) as other:
        observer = await open_client(
            browser, other.url, name, client={"userId": "bob"}, listen=["presence"]
        )
        async with spawn_gateway(env, str(tmp_path / "g1.log"), port=port) as first:
            page = await open_client(browser, first.url, name, client={"userId": "alice"})
            await page.evaluate("window.sub.track({name: 'Alice'})")
            await observer.wait_for_function("window.members.alice?.name === 'Alice'")
            await post(other.url, name, 1)
            await page.wait_for_function("window.got.length === 1")
            await shots.take("before-restart", page, observer)
        # The gateway stopped (SIGTERM: a 1012 close); the page keeps trying.
        await page.wait_for_function("window.rt.state === 'reconnecting'")
        await observer.wait_for_function("!('alice' in window.members)")
        await post(other.url, name, 2)  # published while the page was away
        await shots.take("gateway-down", page, observer)
        async with spawn_gateway(env, str(tmp_path / "g1-again.log"), port=port):
            await page.wait_for_function("window.rt.state === 'connected'")
            # Recovered from history, then live again.
            await page.wait_for_function("window.recovered.length === 1")
            await page.wait_for_function("window.got.length === 2")
            await post(other.url, name, 3)
            await page.wait_for_function("window.got.length === 3")
            # Presence joined again with the same meta, seen from the other gateway.
            await observer.wait_for_function("window.members.alice?.name === 'Alice'")
            await shots.take("recovered", page, observer)
            got = await page.evaluate("window.got")
            assert [m["payload"] for m in got] == [1, 2, 3]  # each exactly once, in order
            assert [m["offset"] for m in got] == [1, 2, 3]
            (recovered,) = await page.evaluate("window.recovered")
            assert recovered["recovered"] is True
            states = await page.evaluate("window.states")
            assert states[:2] == ["connecting", "connected"]
            assert states[-2:] == ["reconnecting", "connected"]
            # The resubscription asked from where the page was.
            frames = await page.evaluate("window.frames")
            resubscribes = [f for d, f in frames if d == "out" and f["type"] == "subscribe"]
            assert resubscribes[-1]["since"]["offset"] == 1
