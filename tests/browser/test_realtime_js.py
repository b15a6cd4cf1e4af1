"""realtime.js in a real browser: the module the gateway serves, loaded by a page of the
gateway's origin with a dynamic import(), talking to a real gateway."""

from __future__ import annotations

import pytest
from playwright.async_api import Browser

from realtime.testing.browser import Shots
from realtime.testing.gateway import make_settings, run_gateway
from tests.browser.client_page import open_client

pytestmark = pytest.mark.integration


async def test_two_pages_publish_and_receive(browser: Browser, shots: Shots) -> None:
    async with run_gateway(make_settings()) as gw:
        alice = await open_client(browser, gw.url, "room", client={"userId": "alice"})
        bob = await open_client(browser, gw.url, "room", client={"userId": "bob"})
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
        alice = await open_client(browser, gw.url, "room", client={"userId": "alice"})
        bob = await open_client(browser, gw.url, "room", client={"userId": "bob"})
        await alice.evaluate("window.sub.track({name: 'Alice'})")
        await bob.evaluate("window.sub.track({name: 'Bob'})")
        both = {"alice": {"name": "Alice"}, "bob": {"name": "Bob"}}
        await bob.wait_for_function(
            "JSON.stringify(window.members) !== '{}' && Object.keys(window.members).length === 2"
        )
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
