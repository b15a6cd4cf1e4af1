"""POST /api/event's Idempotency-Key: the store's rules (memory and real Redis) and a real
embedded gateway answering retries."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from realtime.history.idempotency import (
    CLAIM_SECONDS,
    BadKey,
    IdempotencyStore,
    MemoryIdempotency,
    RedisIdempotency,
    check_key,
    entry_name,
    fingerprint,
)
from realtime.redisconn import connect
from realtime.testing.gateway import Gateway, make_settings, run_gateway, ws_client
from realtime.testing.services import RedisServer

KEY = "k" * 16
OTHER = "o" * 16


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration)])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[IdempotencyStore]:
    made: IdempotencyStore
    if request.param == "memory":
        made = MemoryIdempotency(60)
    else:
        server: RedisServer = request.getfixturevalue("redis")
        made = RedisIdempotency(connect(server.url), 60)
    try:
        yield made
    finally:
        await made.close()


async def test_first_claims_then_the_claim_then_the_answer(
    store: IdempotencyStore, channel: str
) -> None:
    name = entry_name("", channel)
    assert await store.claim(name, "f1") is None
    held = await store.claim(name, "f1")
    assert held is not None and (held.fingerprint, held.answer) == ("f1", None)
    await store.answer(name, "f1", b'{"status":"ok"}')
    held = await store.claim(name, "f2")
    assert held is not None and (held.fingerprint, held.answer) == ("f1", b'{"status":"ok"}')


async def test_a_released_claim_can_be_claimed_again(store: IdempotencyStore, channel: str) -> None:
    name = entry_name("", channel)
    assert await store.claim(name, "f") is None
    await store.release(name)
    assert await store.claim(name, "f") is None


@pytest.mark.integration
async def test_redis_claim_and_answer_expire(redis: RedisServer, channel: str) -> None:
    client = connect(redis.url)
    store = RedisIdempotency(connect(redis.url), 7)
    try:
        name = entry_name("", channel)
        await store.claim(name, "f")
        assert 0 < await client.ttl(name) <= CLAIM_SECONDS
        await store.answer(name, "f", b"{}")
        assert 0 < await client.ttl(name) <= 7
    finally:
        await store.close()
        await client.aclose()


def test_memory_entries_end_with_the_window_and_the_cap() -> None:
    clock = Clock()
    store = MemoryIdempotency(10, max_keys=2, clock=clock)

    async def run() -> None:
        await store.claim("a", "f")
        await store.answer("a", "f", b"1")
        clock.now += 9
        assert (await store.claim("a", "g")) is not None
        clock.now += 2
        assert await store.claim("a", "g") is None  # the window ended
        await store.claim("b", "f")
        await store.claim("c", "f")
        assert len(store) == 2  # "a", the oldest, went first
        assert await store.claim("a", "f") is None

    asyncio.run(run())


def test_claims_end_after_claim_seconds() -> None:
    clock = Clock()
    store = MemoryIdempotency(600, clock=clock)

    async def run() -> None:
        assert await store.claim("a", "f") is None
        clock.now += CLAIM_SECONDS + 1
        assert await store.claim("a", "f") is None

    asyncio.run(run())


@pytest.mark.parametrize("value", ["", "a b", "é", "x" * 256, "tab\t"])
def test_bad_keys_are_refused(value: str) -> None:
    with pytest.raises(BadKey):
        check_key(value)


def test_keys_are_scoped_by_api_key_and_hide_it() -> None:
    assert entry_name(KEY, "r1") != entry_name(OTHER, "r1")
    assert KEY not in entry_name(KEY, "r1")
    assert check_key("~" * 255) == "~" * 255


# --- a real embedded gateway ---------------------------------------------------------------


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    settings = make_settings(HISTORY_CHANNELS="hist.*", API_KEYS=f"{KEY},{OTHER}")
    async with run_gateway(settings) as gw:
        yield gw


async def test_a_retry_is_stored_and_delivered_once(gateway: Gateway) -> None:
    auth = {"authorization": f"Bearer {KEY}"}
    async with (
        httpx.AsyncClient(base_url=gateway.url, headers=auth) as http,
        ws_client(gateway.ws_url + "?user_id=a") as sub,
    ):
        await sub.subscribe("hist.a", "broadcast")
        event = {"channel": "hist.a", "payload": "once"}
        first = await http.post("/api/event", json=event, headers={"idempotency-key": "r1"})
        retry = await http.post("/api/event", json=event, headers={"idempotency-key": "r1"})
        assert first.status_code == retry.status_code == 200
        assert retry.json() == first.json() and first.json()["offset"] == 1
        assert retry.headers["idempotent-replayed"] == "true"
        assert "idempotent-replayed" not in first.headers
        # Another key publishes: the subscriber's next frames are "once" then it, no copy.
        after = await http.post(
            "/api/event", json={**event, "payload": "next"}, headers={"idempotency-key": "r2"}
        )
        assert after.json()["offset"] == 2
        assert (await sub.expect("broadcast"))["payload"] == "once"
        assert (await sub.expect("broadcast"))["payload"] == "next"


async def test_a_plain_channel_retry_gets_the_same_message_id(gateway: Gateway) -> None:
    auth = {"x-api-key": KEY, "idempotency-key": "plain-1"}
    async with httpx.AsyncClient(base_url=gateway.url, headers=auth) as http:
        event = {"channel": "plain", "payload": 1}
        first = (await http.post("/api/event", json=event)).json()
        assert (await http.post("/api/event", json=event)).json() == first
        assert "offset" not in first
        # Without a key, each request is its own.
        del http.headers["idempotency-key"]
        assert (await http.post("/api/event", json=event)).json() != first


async def test_a_key_reused_with_another_body_is_refused(gateway: Gateway) -> None:
    auth = {"x-api-key": KEY, "idempotency-key": "r9"}
    async with httpx.AsyncClient(base_url=gateway.url, headers=auth) as http:
        assert (await http.post("/api/event", json={"channel": "c", "payload": 1})).is_success
        other = await http.post("/api/event", json={"channel": "c", "payload": 2})
    assert other.status_code == 422 and "another body" in other.json()["error"]


async def test_two_api_keys_do_not_share_an_idempotency_key(gateway: Gateway) -> None:
    event = {"channel": "hist.b", "payload": 1}
    async with httpx.AsyncClient(base_url=gateway.url, headers={"idempotency-key": "s"}) as http:
        one = (await http.post("/api/event", json=event, headers={"x-api-key": KEY})).json()
        two = (await http.post("/api/event", json=event, headers={"x-api-key": OTHER})).json()
    assert (one["offset"], two["offset"]) == (1, 2)


async def test_a_claim_in_progress_answers_409(gateway: Gateway) -> None:
    keys = gateway.node.idempotency
    assert keys is not None
    body = b'{"channel":"c","payload":1}'
    # A request holding the claim (as one still publishing would).
    await keys.claim(entry_name(KEY, "busy"), fingerprint(body))
    headers = {"x-api-key": KEY, "idempotency-key": "busy", "content-type": "application/json"}
    async with httpx.AsyncClient(base_url=gateway.url, headers=headers) as http:
        response = await http.post("/api/event", content=body)
    assert response.status_code == 409 and response.headers["retry-after"] == "1"
    assert response.json()["error"]


async def test_a_bad_key_gets_400_and_publishes_nothing(gateway: Gateway) -> None:
    headers = {"x-api-key": KEY, "idempotency-key": "has space"}
    async with httpx.AsyncClient(base_url=gateway.url, headers=headers) as http:
        bad = await http.post("/api/event", json={"channel": "hist.c", "payload": 1})
        assert bad.status_code == 400 and "Idempotency-Key" in bad.json()["error"]
        del http.headers["idempotency-key"]
        good = await http.post("/api/event", json={"channel": "hist.c", "payload": 1})
    assert good.json()["offset"] == 1
