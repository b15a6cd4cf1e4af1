"""realtime.js in a real browser: the module the gateway serves, loaded by a page of the
gateway's origin with a dynamic import(), talking to a real gateway."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import Browser, Page

from realtime.testing.browser import Shots
from realtime.testing.gateway import make_settings, run_gateway

pytestmark = pytest.mark.integration

# Opens a client in the page as window.rt, subscribes to `channel` as window.sub, and keeps
# what arrives in window.got (broadcasts), window.states, window.errors, window.recovered and
# window.members (the members map as an object), shown in the page for the screenshots.
OPEN = """
async ([base, user, channel, options]) => {
    const { Realtime } = await import("/client/realtime.js");
    window.got = []; window.states = []; window.errors = []; window.recovered = [];
    window.members = {};
    const show = () => {
        document.body.style.font = "14px monospace";
        document.body.innerText = [
            "user: " + user + "  state: " + window.rt.state,
            "members: " + JSON.stringify(window.members),
            "broadcasts: " + JSON.stringify(window.got.map((m) => m.payload)),
            "recovered: " + JSON.stringify(window.recovered),
            "errors: " + JSON.stringify(window.errors),
        ].join("\\n");
    };
    window.rt = new Realtime(base, { userId: user, minDelay: 100, maxDelay: 1000 });
    window.rt.on("state", (s) => { window.states.push(s); show(); });
    window.rt.on("error", (e) => { window.errors.push(e.code); show(); });
    await window.rt.connect();
    window.sub = window.rt.subscribe(channel, options);
    window.sub.on("broadcast", (m) => { window.got.push(m); show(); });
    window.sub.on("recovered", (info) => { window.recovered.push(info); show(); });
    window.sub.on("members", (members) => {
        window.members = Object.fromEntries([...members].map(([id, m]) => [id, m.meta]));
        show();
    });
    await window.sub.ready;
    show();
    return true;
}
"""


async def open_client(
    browser: Browser, base: str, user: str, channel: str, **options: Any
) -> Page:
    page = await browser.new_page()
    await page.goto(base + "/healthz")  # a page of the gateway's own origin
    assert await page.evaluate(OPEN, [base, user, channel, options])
    return page


async def test_two_pages_publish_and_receive(browser: Browser, shots: Shots) -> None:
    async with run_gateway(make_settings()) as gw:
        alice = await open_client(browser, gw.url, "alice", "room")
        bob = await open_client(browser, gw.url, "bob", "room")
        ack = await alice.evaluate("window.sub.publish('chat', {text: 'hi bob'})")
        assert ack["type"] == "ack"
        await bob.wait_for_function("window.got.length === 1")
        (message,) = await bob.evaluate("window.got")
        assert message["channel"] == "room"
        assert message["event"] == "chat"
        assert message["payload"] == {"text": "hi bob"}
        assert message["user_id"] == "alice"
        # The sender is subscribed too: it gets its own broadcast, once.
        await alice.wait_for_function("window.got.length === 1")
        await shots.take("bob-received", alice, bob)


async def test_members_follow_track_and_untrack(browser: Browser, shots: Shots) -> None:
    async with run_gateway(make_settings()) as gw:
        alice = await open_client(browser, gw.url, "alice", "room")
        bob = await open_client(browser, gw.url, "bob", "room")
        await alice.evaluate("window.sub.track({name: 'Alice'})")
        await bob.evaluate("window.sub.track({name: 'Bob'})")
        both = {"alice": {"name": "Alice"}, "bob": {"name": "Bob"}}
        await bob.wait_for_function("JSON.stringify(window.members) !== '{}' && "
                                    "Object.keys(window.members).length === 2")
        assert await bob.evaluate("window.members") == both
        await alice.wait_for_function("Object.keys(window.members).length === 2")
        assert await alice.evaluate("window.members") == both
        await shots.take("both-tracked", alice, bob)

        await alice.evaluate("window.sub.track({name: 'Alice', away: true})")
        await bob.wait_for_function("window.members.alice && window.members.alice.away === true")
        await alice.evaluate("window.sub.untrack()")
        await bob.wait_for_function("!('alice' in window.members)")
        assert await bob.evaluate("window.members") == {"bob": {"name": "Bob"}}
        await shots.take("alice-untracked", alice, bob)
