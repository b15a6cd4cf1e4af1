"""Channel permissions against a real gateway: CHANNEL_POLICY, the token's channels claim
(patterns, {sub}), presence meta identity, and the authorization hook on a real HTTP server."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import jwt
import pytest

from realtime.testing.gateway import Client, Gateway, make_settings, run_gateway, ws_client
from realtime.testing.waiting import wait_until_async
from tests.security.servers import HookServer

SECRET = "a-test-secret-that-is-long-enough-for-hs256-000"


def token(sub: str, channels: dict[str, list[str]] | None = None) -> str:
    claims: dict[str, Any] = {"sub": sub, "exp": int(time.time()) + 60}
    if channels is not None:
        claims["channels"] = channels
    return jwt.encode(claims, SECRET, algorithm="HS256")


def connect(gateway: Gateway, sub: str, channels: dict[str, list[str]] | None = None) -> Any:
    return ws_client(gateway.ws_url + f"?token={token(sub, channels)}")


async def forbidden(client: Client, frame: dict[str, Any], ref: int) -> None:
    await client.send({**frame, "ref": ref})
    await client.expect("error", code="forbidden", channel=frame["channel"], ref=ref)


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    async with run_gateway(make_settings(JWT_SECRET=SECRET)) as gw:  # CHANNEL_POLICY: token
        yield gw


ALL = {"*": ["*"]}
LIMITED = {"room:*": ["subscribe"], "chat": ["subscribe", "publish"], "user:{sub}": ["*"]}


async def test_token_policy_allows_only_what_the_token_grants(gateway: Gateway) -> None:
    async with connect(gateway, "watch", ALL) as watcher, connect(gateway, "ann", LIMITED) as ann:
        await watcher.subscribe("room:1")
        await watcher.subscribe("chat", "broadcast")
        await ann.subscribe("room:1", "broadcast")  # room:* grants subscribe
        await forbidden(ann, {"type": "subscribe", "channel": "other"}, 1)
        await forbidden(ann, {"type": "subscribe", "channel": "xroom:1"}, 2)  # whole name
        await forbidden(ann, {"type": "broadcast", "channel": "room:1", "event": "no"}, 3)
        await forbidden(ann, {"type": "presence_join", "channel": "room:1", "payload": {}}, 4)
        await forbidden(ann, {"type": "presence_update", "channel": "room:1", "payload": {}}, 5)
        # Nothing happened: the watcher's next frames are what ann was allowed to send.
        await ann.request({"type": "broadcast", "channel": "chat", "event": "yes"})
        await watcher.expect("broadcast", channel="chat", event="yes", user_id="ann")
        await ann.request({"type": "presence_join", "channel": "user:ann", "payload": {}})
        await ann.request({"type": "presence_leave", "channel": "room:1"})  # always allowed
        async with connect(gateway, "late", ALL) as late:
            sync = await late.subscribe("room:1", "presence")
            assert sync is not None and sync["users"] == []
    await wait_until_async(lambda: gateway.node.hub.channels("broadcast") == 0, timeout=5)


async def test_a_token_without_channels_gets_nothing_under_the_token_policy(
    gateway: Gateway,
) -> None:
    async with connect(gateway, "seed") as seed:
        await forbidden(seed, {"type": "subscribe", "channel": "room"}, 1)
        await forbidden(seed, {"type": "broadcast", "channel": "room"}, 2)
    assert gateway.node.hub.channels("broadcast") == 0


async def test_sub_is_the_users_own_id_and_never_a_wildcard(gateway: Gateway) -> None:
    grant = {"user:{sub}": ["subscribe"], "inbox:{sub}:*": ["subscribe"]}
    async with connect(gateway, "alice", grant) as alice, connect(gateway, "a*", grant) as star:
        await alice.subscribe("user:alice", "broadcast")
        await alice.subscribe("inbox:alice:2024", "broadcast")
        await forbidden(alice, {"type": "subscribe", "channel": "user:bob"}, 1)
        await forbidden(alice, {"type": "subscribe", "channel": "inbox:bob:2024"}, 2)
        await star.subscribe("user:a*", "broadcast")
        await forbidden(star, {"type": "subscribe", "channel": "user:abc"}, 3)


async def test_open_policy_with_tokens_is_the_seeds_behaviour() -> None:
    async with run_gateway(make_settings(JWT_SECRET=SECRET, CHANNEL_POLICY="open")) as gw:
        async with connect(gw, "seed") as seed:
            await seed.subscribe("anything")
            await seed.request({"type": "broadcast", "channel": "anything", "event": "e"})
            await seed.expect("broadcast", event="e")


async def test_presence_meta_cannot_claim_another_identity(gateway: Gateway) -> None:
    async with connect(gateway, "bob", ALL) as bob, connect(gateway, "w", ALL) as watcher:
        await watcher.subscribe("room", "presence")
        frame = {"type": "presence_join", "channel": "room", "payload": {"user_id": "alice"}}
        await forbidden(bob, frame, 1)
        frame["type"] = "presence_update"
        await forbidden(bob, frame, 2)
        await bob.request({**frame, "payload": {"user_id": "bob", "n": 1}})
        # The refused joins stored nothing: the first event the watcher sees is bob's own.
        await watcher.expect("presence_join", user_id="bob", meta={"user_id": "bob", "n": 1})


# --- the authorization hook ---------------------------------------------------------------------


@pytest.fixture
def hook() -> Iterator[HookServer]:
    def decide(request: dict[str, Any]) -> bool | None:
        if request["channel"].startswith("broken"):
            return None
        return bool(request["channel"].startswith("ok"))

    with HookServer(decide).running() as server:
        assert isinstance(server, HookServer)
        yield server


async def test_hook_decides_what_the_token_does_not_grant(hook: HookServer) -> None:
    settings = make_settings(JWT_SECRET=SECRET, AUTH_HOOK_URL=hook.url)
    async with run_gateway(settings) as gw, connect(gw, "hu", {"mine": ["*"]}) as client:
        await client.subscribe("mine", "broadcast")
        assert hook.calls == []  # granted by the token: the backend is not asked
        await client.subscribe("ok-1", "broadcast")
        assert hook.calls == [{"action": "subscribe", "channel": "ok-1", "user_id": "hu"}]
        await client.request({"type": "broadcast", "channel": "ok-1", "event": "e"})
        await client.expect("broadcast", event="e")
        await client.request({"type": "presence_join", "channel": "ok-1", "payload": {}})
        assert [c["action"] for c in hook.calls] == ["subscribe", "publish", "presence"]
        await forbidden(client, {"type": "subscribe", "channel": "no-1"}, 1)
        await forbidden(client, {"type": "subscribe", "channel": "broken-1"}, 2)  # fails closed
        # Cached: asking again does not call the backend.
        calls = len(hook.calls)
        await client.request({"type": "unsubscribe", "channel": "ok-1"})
        await client.subscribe("ok-1", "broadcast")
        await forbidden(client, {"type": "subscribe", "channel": "no-1"}, 3)
        assert len(hook.calls) == calls


async def test_hook_failure_open_allows(hook: HookServer) -> None:
    settings = make_settings(AUTH_HOOK_URL=hook.url, AUTH_HOOK_FAILURE="open")
    async with run_gateway(settings) as gw, ws_client(gw.ws_url + "?user_id=d") as client:
        await client.subscribe("broken-1", "broadcast")
        await forbidden(client, {"type": "subscribe", "channel": "no-1"}, 1)  # a no is a no


async def test_hook_timeout_refuses_within_the_timeout(hook: HookServer) -> None:
    hook.delay = 3.0
    settings = make_settings(AUTH_HOOK_URL=hook.url, AUTH_HOOK_TIMEOUT_SECONDS="0.2")
    async with run_gateway(settings) as gw, ws_client(gw.ws_url + "?user_id=t") as client:
        started = time.monotonic()
        await client.send({"type": "subscribe", "channel": "ok-slow", "ref": 1})
        error = await client.expect("error", code="forbidden", ref=1)
        assert time.monotonic() - started < 2.0
        assert "in time" in error["message"] and "127.0.0.1" not in error["message"]


async def test_hook_answers_expire_from_the_cache(hook: HookServer) -> None:
    settings = make_settings(AUTH_HOOK_URL=hook.url, AUTH_HOOK_CACHE_SECONDS="0.3")
    async with run_gateway(settings) as gw, ws_client(gw.ws_url + "?user_id=c") as client:
        await client.subscribe("ok-c", "broadcast")
        hook.decide = lambda request: False  # the backend revokes
        refs = iter(range(1, 1000))

        async def revoked() -> bool:
            ref = next(refs)
            await client.send({"type": "subscribe", "channel": "ok-c", "listen": [], "ref": ref})
            frame = await client.recv()
            return frame["type"] == "error" and frame["code"] == "forbidden"

        await wait_until_async(revoked, timeout=5, interval=0.05)
        assert len(hook.calls) == 2
