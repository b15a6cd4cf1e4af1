"""The system Chromium reaches the gateway: a page's own WebSocket subscribes, a broadcast
posted over HTTP arrives in the page. It proves the browser harness the client and playground
tests stand on, and the gateway's handshake as a browser makes it (Origin header included)."""

from __future__ import annotations

import httpx
import pytest
from playwright.async_api import Browser
from playwright.async_api import TimeoutError as PageTimeout

from realtime.testing.browser import Shots
from realtime.testing.gateway import make_settings, run_gateway

pytestmark = pytest.mark.integration

SUBSCRIBE = """
([url]) => new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    window.received = [];
    ws.onmessage = (event) => {
        const frame = JSON.parse(event.data);
        window.received.push(frame);
        document.body.textContent = JSON.stringify(window.received);
    };
    ws.onopen = () => {
        ws.send(JSON.stringify({type: "subscribe", channel: "room", listen: ["broadcast"]}));
        resolve(true);
    };
    ws.onerror = () => reject(new Error("websocket error"));
})
"""


async def test_a_page_receives_a_broadcast(browser: Browser, shots: Shots) -> None:
    async with run_gateway(make_settings()) as gw:
        page = await browser.new_page()
        await page.goto(gw.url + "/healthz")  # a page of the gateway's own origin
        await page.evaluate(SUBSCRIBE, [gw.ws_url + "?user_id=alice"])
        async with httpx.AsyncClient(base_url=gw.url) as http:
            body = {"channel": "room", "event": "hello", "payload": {"n": 1}}
            # The subscription has no acknowledgement on the seed's protocol: post until the
            # page has one (each post is a fresh broadcast; the page keeps them all).
            for _ in range(50):
                assert (await http.post("/api/event", json=body)).status_code == 200
                try:
                    await page.wait_for_function(
                        "window.received.some((f) => f.event === 'hello')", timeout=200
                    )
                    break
                except PageTimeout:
                    continue
        frames = await page.evaluate("window.received")
        hello = next(f for f in frames if f.get("event") == "hello")
        assert hello["channel"] == "room"
        assert hello["payload"] == {"n": 1}
        paths = await shots.take("received", page)
        assert paths[0].stat().st_size > 0
