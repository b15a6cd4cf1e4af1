"""realtime.js and access. With JWTs: a `refresh` on token_expired keeps the connection, a
4001 close is followed by a reconnect with a new token. A refused upgrade (token or origin)
stops the client, with no retry loop. The module loads and connects from another origin."""

from __future__ import annotations

import time

import httpx
import jwt
import pytest
from playwright.async_api import Browser

from realtime.config import Settings
from realtime.testing.browser import Shots
from realtime.testing.gateway import make_settings, run_gateway
from tests.browser.client_page import open_client, open_failing

pytestmark = pytest.mark.integration

SECRET = "a-test-secret-that-is-long-enough-for-hs256"


def token(user: str, lifetime: float) -> str:
    claims = {"sub": user, "exp": int(time.time() + lifetime)}
    return jwt.encode(claims, SECRET, algorithm="HS256")


def jwt_settings(grace: str = "1") -> Settings:
    return make_settings(JWT_SECRET=SECRET, CHANNEL_POLICY="open", JWT_EXPIRY_GRACE_SECONDS=grace)


async def test_an_expiring_token_is_refreshed_on_the_same_connection(
    browser: Browser, shots: Shots
) -> None:
    async with run_gateway(jwt_settings()) as gw:
        client = {"token": token("alice", 6), "tokens": [token("alice", 600)]}
        page = await open_client(browser, gw.url, "room", client=client)
        await page.wait_for_function("window.errors.includes('token_expired')")
        await page.wait_for_function(
            "window.frames.some(([d, f]) => d === 'out' && f.type === 'refresh')"
        )
        frames = await page.evaluate("window.frames")
        (refresh,) = [f for d, f in frames if d == "out" and f["type"] == "refresh"]
        assert refresh["token"] == "[redacted]"  # the frame event never shows a token
        # Past the grace (1 s after the expiry) and still the same connection: publishing works.
        ack = await page.evaluate("window.sub.publish('after', 1)")
        assert ack["type"] == "ack"
        await page.wait_for_function("window.got.length === 1")
        assert await page.evaluate("window.states") == ["connecting", "connected"]
        assert await page.evaluate("window.tokenCalls") == 1
        await shots.take("refreshed", page)


async def test_a_4001_close_reconnects_with_a_new_token(browser: Browser, shots: Shots) -> None:
    async with run_gateway(jwt_settings()) as gw:
        # The first fresh token is refused by the refresh (invalid), so the gateway closes
        # with 4001 after the grace; the reconnect asks getToken again and gets a good one.
        client = {"token": token("alice", 6), "tokens": ["not-a-token", token("alice", 600)]}
        page = await open_client(browser, gw.url, "room", client=client)
        await page.wait_for_function("window.errors.includes('invalid_token')")
        await page.wait_for_function("window.errors.includes('connection_lost:4001')")
        await page.wait_for_function("window.rt.state === 'connected' && window.tokenCalls >= 2")
        # Subscribed on both connections.
        await page.wait_for_function(
            "window.frames.filter(([d, f]) => d === 'in' && f.type === 'ack').length >= 2"
        )
        async with httpx.AsyncClient() as http:
            body = {"channel": "room", "payload": "back"}
            assert (await http.post(gw.url + "/api/event", json=body)).status_code == 200
        await page.wait_for_function("window.got.length === 1")  # subscribed again
        assert (await page.evaluate("window.states"))[-2:] == ["reconnecting", "connected"]
        await shots.take("reconnected", page)


async def test_a_refused_upgrade_stops_the_client(browser: Browser, shots: Shots) -> None:
    async with run_gateway(jwt_settings()) as gw:
        client = {"token": "not-a-token", "tokens": ["still-not-a-token"]}
        page, failed = await open_failing(browser, gw.url, "room", client)
        assert failed["code"] == "refused"
        assert failed["status"] == 401
        assert "invalid" in failed["message"]
        # One more try with a fresh token, then nothing: closed, no retry scheduled.
        assert await page.evaluate("window.tokenCalls") == 1
        assert await page.evaluate("window.rt.state") == "closed"
        assert await page.evaluate("window.rt._timer") is None
        assert await page.evaluate("window.errors") == ["refused"]
        await shots.take("refused", page)


async def test_a_refused_origin_stops_the_client(browser: Browser, shots: Shots) -> None:
    # The page's origin (the gateway's own) is not allowed to open /ws, and /api/event's CORS
    # list (the same by default) does not allow it either: the client still learns why.
    settings = make_settings(WS_ALLOWED_ORIGINS="https://only.example")
    async with run_gateway(settings) as gw:
        page, failed = await open_failing(browser, gw.url, "room", {"userId": "carol"})
        assert failed["code"] == "refused"
        assert failed["status"] == 403
        assert await page.evaluate("window.rt.state") == "closed"
        assert await page.evaluate("window.rt._timer") is None
        await shots.take("refused", page)


async def test_the_module_loads_and_connects_from_another_origin(
    browser: Browser, shots: Shots
) -> None:
    async with run_gateway(make_settings()) as site:
        # CORS narrowed for /api/event (and /ws allows the site): the module must still load.
        narrow = make_settings(
            CORS_ALLOWED_ORIGINS="https://only.example", WS_ALLOWED_ORIGINS=site.url
        )
        async with run_gateway(narrow) as gw:
            assert site.url != gw.url
            page = await open_client(
                browser, gw.url, "room", origin=site.url, client={"userId": "carol"}
            )
            assert await page.evaluate("location.origin") == site.url
            await page.evaluate("window.sub.publish('hello', 'from elsewhere')")
            await page.wait_for_function("window.got.length === 1")
            await shots.take("cross-origin", page)
