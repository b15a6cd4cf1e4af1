"""realtime.client against a real in-process gateway: round trips, presence, tokens, errors."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest

from realtime.client import (
    Backoff,
    Broadcast,
    Client,
    ConnectError,
    ConnectionState,
    GatewayError,
    Member,
    PresenceJoin,
    PresenceLeave,
    PresenceSync,
    PresenceUpdate,
    Publisher,
    PublishError,
    Subscribed,
    Subscription,
)
from realtime.client.messages import Message
from realtime.errors import HistoryError
from realtime.testing.gateway import Gateway, make_settings, run_gateway
from realtime.testing.waiting import wait_until_async

SECRET = "a-test-secret-that-is-long-enough-for-hs256-000"
KEY = "client-test-key-0123456789"


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    async with run_gateway(make_settings(API_KEYS=KEY, HISTORY_CHANNELS="hist.*")) as gw:
        yield gw


async def next_of(sub: Subscription, kind: type[Any], timeout: float = 5) -> Any:
    """The next message of ``kind`` from ``sub`` (others before it are skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        remaining = max(0.01, deadline - time.monotonic())
        message: Message = await asyncio.wait_for(anext(sub), remaining)
        if isinstance(message, kind):
            return message


async def test_subscribe_publish_round_trip(gateway: Gateway) -> None:
    async with (
        Client(gateway.url, user_id="alice") as alice,
        Client(gateway.ws_url, user_id="bob") as bob,
        Publisher(gateway.url, api_key=KEY) as publisher,
    ):
        assert alice.state is ConnectionState.CONNECTED
        a_room = await alice.subscribe("room", listen=("broadcast",))
        b_room = await bob.subscribe("room", listen=("broadcast",))
        ack = await a_room.publish("chat", {"text": "hi"})
        assert ack.offset == 0  # not a history channel
        for sub in (a_room, b_room):
            message = await next_of(sub, Broadcast)
            assert (message.event, message.payload, message.user_id) == (
                "chat",
                {"text": "hi"},
                "alice",
            )
        published = await publisher.publish("room", "news", [1, 2])
        assert len(published.message_id) == 32
        message = await next_of(b_room, Broadcast)
        assert (message.event, message.payload, message.user_id) == ("news", [1, 2], "")
        # On a history channel the ack and the HTTP answer say where it was stored.
        hist = await bob.subscribe("hist.1", listen=("broadcast",))
        assert (await hist.publish("e", 1)).offset == 1
        assert (await publisher.publish("hist.1", "e", 2)).offset == 2
        page = await publisher.history("hist.1")
        assert [p.payload for p in page.publications] == [1, 2]
        assert [m.offset for m in [await next_of(hist, Broadcast) for _ in range(2)]] == [1, 2]
        assert hist.position is not None and hist.position.offset == 2


async def test_publisher_errors_carry_status_and_error(gateway: Gateway) -> None:
    async with Publisher(gateway.url) as publisher:
        with pytest.raises(PublishError) as info:
            await publisher.publish("room", "e", 1)
    assert info.value.status == 401 and "key" in info.value.error.lower()


async def test_presence_members_exact_across_join_update_leave(gateway: Gateway) -> None:
    async with (
        Client(gateway.url, user_id="watcher") as watcher,
        Client(gateway.url, user_id="alice") as alice,
        Client(gateway.url, user_id="bob") as bob,
    ):
        seen = await watcher.subscribe("lobby")
        assert (await next_of(seen, PresenceSync)).users == []
        a = await alice.subscribe("lobby", listen=("broadcast",))
        await a.track({"name": "Alice"})
        assert (await next_of(seen, PresenceJoin)).user_id == "alice"
        assert dict(seen.members) == {
            "alice": Member(
                user_id="alice", meta={"name": "Alice"}, updated_at=seen.members["alice"].updated_at
            )
        }
        b = await bob.subscribe("lobby", listen=("presence",))
        await b.track({"name": "Bob"})
        await next_of(seen, PresenceJoin)
        # bob's own subscription sees alice from its sync, and itself from the event
        await wait_until_async(lambda: set(b.members) == {"alice", "bob"}, timeout=5)
        await a.track({"name": "Alice", "away": True})
        update = await next_of(seen, PresenceUpdate)
        assert update.meta == {"name": "Alice", "away": True}
        assert seen.members["alice"].meta == {"name": "Alice", "away": True}
        assert a.tracked == {"name": "Alice", "away": True}
        await a.untrack()
        assert (await next_of(seen, PresenceLeave)).user_id == "alice"
        assert set(seen.members) == {"bob"}
        await bob.close()
        assert (await next_of(seen, PresenceLeave)).user_id == "bob"
        assert dict(seen.members) == {}


async def test_bad_input_raises_and_the_client_lives_on(gateway: Gateway) -> None:
    errors: list[Exception] = []
    async with Client(gateway.url, user_id="u", on_error=errors.append) as client:
        with pytest.raises(GatewayError) as info:
            await client.subscribe("__realtime__.probe.x")
        assert info.value.code == "invalid_message"
        assert "__realtime__.probe.x" not in client.subscriptions
        with pytest.raises(GatewayError) as info:
            await client.publish("room", "e" * 500, None)
        assert info.value.code == "invalid_message"
        # still connected, and working
        room = await client.subscribe("room", listen=("broadcast",))
        with pytest.raises(ValueError):
            await client.subscribe("room")
        await room.publish("ok", True)
        assert (await next_of(room, Broadcast)).event == "ok"
        assert client.state is ConnectionState.CONNECTED and errors == []


def token(sub: str, ttl: float, channels: dict[str, list[str]] | None = None) -> str:
    claims = {"sub": sub, "exp": int(time.time() + ttl), "channels": channels or {"*": ["*"]}}
    return jwt.encode(claims, SECRET, algorithm="HS256")


async def test_token_provider_is_called_on_token_expired() -> None:
    settings = make_settings(JWT_SECRET=SECRET, JWT_EXPIRY_GRACE_SECONDS="1")
    calls: list[float] = []

    def provider() -> str:
        calls.append(time.time())
        return token("u", ttl=60)

    states: list[ConnectionState] = []
    async with run_gateway(settings) as gateway:
        async with Client(
            gateway.url, token=token("u", ttl=1.5), token_provider=provider, on_state=states.append
        ) as client:
            room = await client.subscribe("room", listen=("broadcast",))
            await wait_until_async(lambda: calls, timeout=5, message="provider called")
            # Past the grace period the connection is the same one: it was refreshed, not
            # closed with 4001 and reconnected.
            expired_at = calls[0]
            await wait_until_async(lambda: time.time() > expired_at + 1.5, timeout=5)
            await room.publish("after", 1)
            assert (await next_of(room, Broadcast)).event == "after"
            assert client.close_code is None and len(calls) == 1
        assert ConnectionState.RECONNECTING not in states


async def test_refused_upgrade_and_forbidden_channel() -> None:
    settings = make_settings(JWT_SECRET=SECRET)
    async with run_gateway(settings) as gateway:
        with pytest.raises(ConnectError) as refused:
            await Client(gateway.url, token="not-a-jwt").connect()
        assert refused.value.status == 401
        grant = token("u", ttl=60, channels={"mine": ["*"]})
        async with Client(gateway.url, token=grant) as client:
            with pytest.raises(GatewayError) as info:
                await client.subscribe("theirs")
            assert info.value.code == "forbidden" and info.value.channel == "theirs"
            mine = await client.subscribe("mine", listen=("broadcast",))
            await mine.publish("e", 1)
            assert (await next_of(mine, Broadcast)).payload == 1


async def test_an_expired_token_without_provider_ends_the_client() -> None:
    """No token_provider: token_expired goes to on_error, the gateway closes with 4001, the
    reconnect with the same (expired) token is refused with 401, and that is final."""
    settings = make_settings(JWT_SECRET=SECRET, JWT_EXPIRY_GRACE_SECONDS="0.5")
    errors: list[Exception] = []
    async with run_gateway(settings) as gateway:
        client = Client(
            gateway.url,
            token=token("u", ttl=1.2),
            backoff=Backoff(base=0.05, cap=0.2),
            on_error=errors.append,
        )
        async with client:
            room = await client.subscribe("room", listen=("broadcast",))
            with pytest.raises(ConnectError) as info:
                await asyncio.wait_for(anext(room), 15)
            assert info.value.status == 401
            await asyncio.wait_for(client.wait_closed(), 5)
            assert client.state is ConnectionState.CLOSED and client.close_code == 4001
            codes = [getattr(e, "code", None) or getattr(e, "status", None) for e in errors]
            assert codes == ["token_expired", 401]
            with pytest.raises(ConnectError):
                await client.publish("room", "e")


async def test_a_raising_callback_or_an_unknown_frame_does_not_stop_the_reader(
    gateway: Gateway,
) -> None:
    seen: list[str] = []

    def on_frame(frame: str) -> None:
        seen.append(frame)
        raise RuntimeError("an application bug")

    async with Client(gateway.url, user_id="u", on_frame=on_frame) as client:
        room = await client.subscribe("room", listen=("broadcast",))
        for n in range(3):
            await room.publish("e", n)
        assert [(await next_of(room, Broadcast)).payload for _ in range(3)] == [0, 1, 2]
        assert len(seen) == 3
        client._dispatch('{"type":"from_the_future","x":1}')
        client._dispatch("not json at all")
        await room.publish("e", "still")
        assert (await next_of(room, Broadcast)).payload == "still"


async def test_the_server_api_unsubscribe_ends_that_subscription_only(gateway: Gateway) -> None:
    errors: list[Exception] = []
    async with Client(gateway.url, user_id="u", on_error=errors.append) as client:
        room = await client.subscribe("room", listen=("broadcast",))
        other = await client.subscribe("other", listen=("broadcast",))
        async with Publisher(gateway.url, api_key=KEY) as publisher:
            answer = await publisher._http.post(
                gateway.url + "/api/unsubscribe",
                json={"user": "u", "channel": "room"},
                headers={"X-API-Key": KEY},
            )
            assert answer.status_code == 200, answer.text
            with pytest.raises(GatewayError) as info:
                await asyncio.wait_for(anext(room), 5)
            assert info.value.code == "unsubscribed" and not room.active
            assert [getattr(e, "code", None) for e in errors] == ["unsubscribed"]
            assert set(client.subscriptions) == {"other"}
            await publisher.publish("other", "still", 1)
            assert (await next_of(other, Broadcast)).event == "still"
            again = await client.subscribe("room", listen=("broadcast",))
            await publisher.publish("room", "back", 1)
            assert (await next_of(again, Broadcast)).event == "back"


async def test_token_provider_is_called_before_each_reconnect() -> None:
    settings = make_settings(JWT_SECRET=SECRET, API_KEYS=KEY)
    calls = 0

    async def provider() -> str:
        nonlocal calls
        calls += 1
        return token("u", ttl=60)

    states: list[ConnectionState] = []
    async with (
        run_gateway(settings) as gateway,
        Publisher(gateway.url, api_key=KEY) as publisher,
        Client(
            gateway.url,
            token_provider=provider,
            backoff=Backoff(base=0.05, cap=0.2),
            on_state=states.append,
        ) as client,
    ):
        assert calls == 1  # no token given: the provider gave the first one
        room = await client.subscribe("room", listen=("broadcast",))
        answer = await publisher._http.post(
            gateway.url + "/api/disconnect", json={"user": "u"}, headers={"X-API-Key": KEY}
        )
        assert answer.json()["connections"] == 1
        await wait_until_async(lambda: states.count(ConnectionState.CONNECTED) == 2, timeout=10)
        assert client.close_code == 4000 and calls == 2
        await publisher.publish("room", "after", 1)  # resubscribed on the new connection
        assert (await next_of(room, Broadcast)).event == "after"


async def test_history_unavailable_on_reconnect_keeps_the_subscription(gateway: Gateway) -> None:
    """The gateway subscribes but cannot replay (its history store failed: injected here):
    the subscription goes on live and yields recovered=False, so the application reloads."""
    errors: list[Exception] = []
    store = gateway.node.history.store  # type: ignore[union-attr]
    real_read = store.read

    async def failing_read(channel: str, after: int, limit: int) -> Any:
        if limit > 0:  # a replay's read, not the position's
            raise HistoryError("read failed: injected")
        return await real_read(channel, after, limit)

    async with (
        Publisher(gateway.url, api_key=KEY) as publisher,
        Client(
            gateway.url,
            user_id="u",
            backoff=Backoff(base=0.05, cap=0.2),
            on_error=errors.append,
        ) as client,
    ):
        sub = await client.subscribe("hist.2", listen=("broadcast",))
        await publisher.publish("hist.2", "e", 1)
        assert (await next_of(sub, Broadcast)).payload == 1
        store.read = failing_read  # type: ignore[method-assign]
        try:
            await publisher._http.post(
                gateway.url + "/api/disconnect", json={"user": "u"}, headers={"X-API-Key": KEY}
            )
            lost = await next_of(sub, Subscribed)
        finally:
            store.read = real_read  # type: ignore[method-assign]
        assert (lost.recovered, lost.offset) == (False, 1)
        assert [getattr(e, "code", None) for e in errors] == ["history_unavailable"]
        await publisher.publish("hist.2", "e", 2)
        assert (await next_of(sub, Broadcast)).payload == 2
        assert sub.active and client.connected
