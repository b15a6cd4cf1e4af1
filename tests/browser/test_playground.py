"""The playground page in a real browser, driven as a person would: fields, buttons, what the
page shows. Two tabs talk and see each other's presence; the page reconnects and recovers
after its gateway restarts; it works opened from another origin; it is off where it should be."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import jwt
import pytest
from playwright.async_api import Browser, Locator, Page, expect

from realtime.server.playground import DIRECTORY, OFF
from realtime.testing.browser import Shots
from realtime.testing.gateway import make_settings, run_gateway, spawn_gateway
from realtime.testing.services import RedisServer
from realtime.testing.waiting import free_port

pytestmark = pytest.mark.integration

TIMEOUT = 10_000  # ms, for each thing the page should come to show
KEY = "k" * 32
SECRET = "a-test-secret-that-is-long-enough-for-hs256"


async def open_playground(browser: Browser, url: str, user: str) -> Page:
    """The page at ``url``, connected as ``user``."""
    page = await browser.new_page()
    await page.goto(url)
    await page.fill("#userId", user)
    await page.click("#connect")
    await expect(page.locator("#state")).to_have_text("connected", timeout=TIMEOUT)
    return page


async def subscribe(page: Page, channel: str) -> Locator:
    """Subscribes ``channel`` (broadcast and presence, recover) and answers its card."""
    await page.fill("#channel", channel)
    await page.click("#subscribe")
    card = page.locator(f"section.channel[data-channel='{channel}']")
    await expect(card.locator(".note")).to_have_text("subscribed", timeout=TIMEOUT)
    return card


async def join(card: Locator, meta: str) -> None:
    await card.locator(".meta").fill(meta)
    await card.locator(".join").click()
    await expect(card.locator(".leave")).to_be_enabled(timeout=TIMEOUT)


def members(card: Locator) -> Locator:
    return card.locator(".members li")


async def send(card: Locator, event: str, payload: str) -> None:
    await card.locator(".event").fill(event)
    await card.locator(".payload").fill(payload)
    await card.locator(".send").click()


async def test_two_tabs_talk_and_see_each_other(browser: Browser, shots: Shots) -> None:
    async with run_gateway(make_settings()) as gw:
        # As a person would: the gateway's own address, / (which leads to the page).
        a = await open_playground(browser, gw.url + "/", "alice")
        b = await open_playground(browser, gw.url + "/", "bob")
        assert await a.locator("#gateway").input_value() == gw.url
        card_a, card_b = await subscribe(a, "room1"), await subscribe(b, "room1")
        await join(card_a, '{"name": "Alice"}')
        await join(card_b, '{"name": "Bob"}')
        for card in (card_a, card_b):
            await expect(members(card)).to_have_count(2, timeout=TIMEOUT)
        await expect(card_b.locator(".members li[data-user='alice']")).to_contain_text(
            '{"name":"Alice"}'
        )
        await shots.take("joined", a, b)
        # Update: the other tab sees the new meta.
        await card_a.locator(".meta").fill('{"name": "Alice", "mood": "busy"}')
        await card_a.locator(".update").click()
        await expect(card_b.locator(".members li[data-user='alice']")).to_contain_text(
            '{"name":"Alice","mood":"busy"}', timeout=TIMEOUT
        )

        await send(card_a, "chat", '{"text": "hello from alice"}')
        await expect(card_b.locator(".messages li").first).to_have_text(
            'alice: chat {"text":"hello from alice"}', timeout=TIMEOUT
        )
        # The event log shows the frame going out of one page and into the other.
        await expect(a.locator("#log li.out").first).to_contain_text('"type":"broadcast"')
        await expect(b.locator("#log li.in", has_text="hello from alice")).to_have_count(1)
        await shots.take("broadcast", a, b)

        # A payload that is not JSON is said so, and nothing is sent.
        sent = await a.locator("#log li.out").count()
        await send(card_a, "chat", "{not json")
        await expect(card_a.locator(".error")).to_contain_text("the payload is not valid JSON")
        assert await a.locator("#log li.out").count() == sent
        await shots.take("bad-json", a)

        # An HTTP event, posted from b's page, reaches a.
        await b.fill("#httpPayload", '{"text": "over http"}')
        await b.click("#httpSend")
        await expect(b.locator("#httpStatus")).to_contain_text('200 {"status":"ok"')
        await expect(card_a.locator(".messages li").first).to_have_text(
            '(http) from-http {"text":"over http"}', timeout=TIMEOUT
        )
        # The inspector says the server API is off on a gateway without API_KEYS.
        await b.click("#inspect")
        await expect(b.locator("#inspectorStatus")).to_contain_text("the server API is off")
        await shots.take("http-event", a, b)

        # Alice leaves the channel's presence, then comes back and closes her tab.
        await card_a.locator(".leave").click()
        await expect(members(card_b)).to_have_count(1, timeout=TIMEOUT)
        await expect(members(card_b)).to_have_attribute("data-user", "bob")
        await shots.take("alice-left", a, b)
        await join(card_a, '{"name": "Alice", "back": true}')
        await expect(members(card_b)).to_have_count(2, timeout=TIMEOUT)
        await a.close()
        await expect(members(card_b)).to_have_count(1, timeout=TIMEOUT)
        await shots.take("alice-closed-her-tab", b)


async def test_the_page_reconnects_and_recovers_after_its_gateway_restarts(
    browser: Browser, shots: Shots, redis: RedisServer, channel: str, tmp_path: Path
) -> None:
    env = {
        "BROADCAST_MQ_TYPE": "redis",
        "PRESENCE_STORE": "redis",
        "REDIS_URL": redis.url,
        "HISTORY_CHANNELS": "hist-*",
    }
    name = f"hist-{channel}"
    port = free_port()
    # A second instance on the same Redis publishes while the page's gateway is down.
    other = make_settings(**env)
    async with run_gateway(other) as publisher:
        async with spawn_gateway(env, str(tmp_path / "first.log"), port=port) as first:
            page = await open_playground(browser, first.url + "/", "carol")
            card = await subscribe(page, name)
            await join(card, '{"name": "Carol"}')
            await send(card, "chat", '{"n": 1}')
            await expect(card.locator(".messages li")).to_have_count(1, timeout=TIMEOUT)
            await shots.take("before-restart", page)
            first.process.kill()
            first.process.wait()
        await expect(page.locator("#state")).to_have_text("reconnecting", timeout=TIMEOUT)
        async with httpx.AsyncClient() as http:
            response = await http.post(
                publisher.url + "/api/event",
                json={"channel": name, "event": "while-down", "payload": {"n": 2}},
            )
            assert response.status_code == 200
        await shots.take("gateway-down", page)
        async with spawn_gateway(env, str(tmp_path / "second.log"), port=port):
            await expect(page.locator("#state")).to_have_text("connected", timeout=20_000)
            await expect(card.locator(".note")).to_have_text(
                "reconnected: recovered every message missed", timeout=TIMEOUT
            )
            await expect(card.locator(".messages li").first).to_have_text(
                '(http) while-down {"n":2}', timeout=TIMEOUT
            )
            await expect(card.locator(".messages li")).to_have_count(2)
            # Presence is joined again with the same meta.
            await expect(card.locator(".members li[data-user='carol']")).to_contain_text(
                '{"name":"Carol"}', timeout=TIMEOUT
            )
            await shots.take("recovered", page)


@pytest.mark.parametrize(
    "env",
    [{"PLAYGROUND": "0"}, {"JWT_SECRET": "a-test-secret-that-is-long-enough-for-hs256"}],
    ids=["PLAYGROUND=0", "JWT_SECRET"],
)
async def test_off_gives_404(browser: Browser, shots: Shots, env: dict[str, str]) -> None:
    async with run_gateway(make_settings(**env)) as gw:
        page = await browser.new_page()
        response = await page.goto(gw.url + "/")
        assert response is not None and response.status == 404
        assert await response.json() == {"error": OFF}
        await shots.take("off", page)


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def other_origin() -> Iterator[str]:
    """The playground's files served by a plain static server on another port (another
    origin), as someone would host them elsewhere."""
    handler = functools.partial(QuietHandler, directory=str(DIRECTORY))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
async def keyed_gateway() -> AsyncIterator[str]:
    async with run_gateway(make_settings(API_KEYS=KEY)) as gw:
        yield gw.url


async def test_the_page_works_opened_from_another_origin(
    browser: Browser, shots: Shots, other_origin: str, keyed_gateway: str
) -> None:
    # The gateway serves no playground here (API_KEYS turns it off); the files come from
    # elsewhere and name the gateway in ?gateway=.
    url = f"{other_origin}/index.html?gateway={keyed_gateway}"
    page = await open_playground(browser, url, "dave")
    card = await subscribe(page, "room1")
    await join(card, '{"name": "Dave"}')
    await expect(members(card)).to_have_count(1, timeout=TIMEOUT)
    await send(card, "chat", '{"text": "cross-origin"}')
    await expect(card.locator(".messages li").first).to_have_text(
        'dave: chat {"text":"cross-origin"}', timeout=TIMEOUT
    )
    # No realtime.js on the static server: the gateway's own was loaded.
    loaded = await page.evaluate("[...window.playground.clients.keys()]")
    assert loaded == [f"{keyed_gateway}/client/realtime.js"]
    # POST /api/event and the server API's GETs, cross-origin, with the key.
    await page.fill("#apiKey", KEY)
    await page.click("#httpSend")
    await expect(page.locator("#httpStatus")).to_contain_text('200 {"status":"ok"')
    await page.click("#inspect")
    row = page.locator("#inspector tr[data-channel='room1'] td")
    await expect(row).to_have_text(["room1", "1", "1"], timeout=TIMEOUT)
    await shots.take("another-origin", page)
    # Without the key the inspector says what is missing.
    await page.fill("#apiKey", "")
    await page.click("#inspect")
    await expect(page.locator("#inspectorStatus")).to_contain_text("401: enter an API key")


async def test_the_page_of_one_gateway_talks_to_another(browser: Browser, shots: Shots) -> None:
    async with run_gateway(make_settings()) as serving, run_gateway(make_settings()) as other:
        page = await open_playground(browser, f"{serving.url}/?gateway={other.url}", "erin")
        assert await page.locator("#gateway").input_value() == other.url
        card = await subscribe(page, "room1")
        assert (serving.node.connections, other.node.connections) == (0, 1)
        async with httpx.AsyncClient() as http:
            body = {"channel": "room1", "event": "on-the-other", "payload": {}}
            assert (await http.post(other.url + "/api/event", json=body)).status_code == 200
        await expect(card.locator(".messages li").first).to_have_text(
            "(http) on-the-other {}", timeout=TIMEOUT
        )
        # Only code of the page's own server runs in its origin: its realtime.js, not the
        # other gateway's (a link's ?gateway= must not choose what script runs here).
        loaded = await page.evaluate("[...window.playground.clients.keys()]")
        assert loaded == [f"{serving.url}/client/realtime.js"]
        await shots.take("other-gateway", page)


async def test_a_jwt_instead_of_a_user_id(browser: Browser, shots: Shots) -> None:
    settings = make_settings(JWT_SECRET=SECRET, PLAYGROUND="1")
    claims = {"sub": "frank", "exp": int(time.time()) + 600, "channels": {"room*": ["*"]}}
    async with run_gateway(settings) as gw:
        page = await browser.new_page()
        await page.goto(gw.url + "/")
        # A token the gateway refuses: the page says why, and stays disconnected.
        await page.fill("#token", jwt.encode(claims, "another-secret-that-is-also-long-enough"))
        await page.click("#connect")
        await expect(page.locator("#connectError")).to_contain_text("401", timeout=TIMEOUT)
        await expect(page.locator("#state")).to_have_text("closed")
        await shots.take("refused", page)
        await page.fill("#token", jwt.encode(claims, SECRET))
        await page.click("#connect")
        await expect(page.locator("#state")).to_have_text("connected", timeout=TIMEOUT)
        card = await subscribe(page, "room1")
        await join(card, '{"name": "Frank"}')
        # The user id is the token's, whatever the user id field says.
        await expect(members(card)).to_have_attribute("data-user", "frank", timeout=TIMEOUT)
        # The token is never shown in the event log.
        assert claims["sub"] in await page.locator("#log").inner_text()
        assert jwt.encode(claims, SECRET)[:20] not in await page.locator("#log").inner_text()
        await shots.take("connected-with-a-token", page)
