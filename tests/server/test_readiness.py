"""/readyz against a real Redis of its own: frozen (SIGSTOP) and thawed, restarted, its Pub/Sub
connections killed, a subscription silently lost; probes never reach a client, and clients
cannot use the gateway's reserved channels."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import redis.asyncio as aioredis

from realtime.engine.liveness import Liveness
from realtime.testing.gateway import Gateway, make_settings, run_gateway, ws_client
from realtime.testing.services import RedisServer, redis_server
from realtime.testing.waiting import wait_until_async
from realtime.wire.messages import BROADCAST, RESERVED_PREFIX

pytestmark = pytest.mark.integration

INTERVAL, TIMEOUT = 0.2, 0.5
#: The bound the liveness module documents: interval + timeout, plus room for a loaded machine.
TO_RED = INTERVAL + TIMEOUT + 1.5


@pytest.fixture(scope="module")
def own_redis() -> Iterator[RedisServer]:
    # Its own server: these tests freeze and restart it.
    with redis_server() as server:
        yield server


@pytest.fixture
async def gateway(own_redis: RedisServer) -> AsyncIterator[Gateway]:
    settings = make_settings(
        BROADCAST_MQ_TYPE="redis",
        PRESENCE_STORE="redis",
        REDIS_URL=own_redis.url,
        BROKER_PROBE_INTERVAL_SECONDS=str(INTERVAL),
        BROKER_PROBE_TIMEOUT_SECONDS=str(TIMEOUT),
    )
    async with run_gateway(settings) as gw:
        yield gw


async def _ready(http: httpx.AsyncClient, gw: Gateway) -> bool:
    return (await http.get(gw.url + "/readyz")).status_code == 200


async def test_ready_reports_probes_and_store(gateway: Gateway) -> None:
    async with httpx.AsyncClient() as http:
        await wait_until_async(lambda: _ready(http, gateway), 10)
        body = (await http.get(gateway.url + "/readyz")).json()
    assert body["status"] == "ready"
    assert body["subscribers"] == {"broadcast": True, "presence": True}
    assert body["probes"]["broadcast"]["ok"] and body["probes"]["presence"]["ok"]
    assert body["presence_store"]["ok"] and body["presence_store"]["checked"]


async def test_frozen_redis_turns_readyz_red_then_green(
    gateway: Gateway, own_redis: RedisServer
) -> None:
    process = own_redis.processes[0]
    async with httpx.AsyncClient(timeout=10) as http:
        await wait_until_async(lambda: _ready(http, gateway), 10)
        frozen = time.monotonic()
        process.send_signal(signal.SIGSTOP)
        try:
            # The connections stay open: only the probe can tell.
            await wait_until_async(
                lambda: _not_ready(http, gateway), TO_RED, message="red while Redis is frozen"
            )
            to_red = time.monotonic() - frozen
            body = (await http.get(gateway.url + "/readyz")).json()
            assert body["subscribers"] == {"broadcast": True, "presence": True}

            async def store_red() -> bool:
                body = (await http.get(gateway.url + "/readyz")).json()
                return not body["presence_store"]["ok"]

            # The broker probe and the store ping fail on their own clocks: either may be first.
            await wait_until_async(
                store_red, TO_RED - (time.monotonic() - frozen), message="store red"
            )
        finally:
            process.send_signal(signal.SIGCONT)
        await wait_until_async(lambda: _ready(http, gateway), 10, message="green after SIGCONT")
    assert to_red <= TO_RED


async def _not_ready(http: httpx.AsyncClient, gw: Gateway) -> bool:
    return (await http.get(gw.url + "/readyz")).status_code == 503


async def test_lost_subscription_turns_readyz_red(gateway: Gateway) -> None:
    """A deaf subscriber: the connection is up and says ready, but Redis no longer sends it
    the probe channel (really unsubscribed there, as a broker bug would leave it)."""
    broker = gateway.node.brokers[BROADCAST]
    liveness = gateway.node.liveness
    async with httpx.AsyncClient() as http:
        await wait_until_async(lambda: _ready(http, gateway), 10)
        await broker.unsubscribe(BROADCAST, liveness.channel)
        await wait_until_async(lambda: _not_ready(http, gateway), TO_RED)
        body = (await http.get(gateway.url + "/readyz")).json()
        assert body["subscribers"]["broadcast"] is True  # the broker itself sees nothing wrong
        assert body["probes"]["broadcast"]["error"] == f"no probe back within {TIMEOUT:g}s"


async def test_pubsub_kill_resubscribes_fast(
    gateway: Gateway, own_redis: RedisServer, channel: str
) -> None:
    admin = aioredis.Redis.from_url(own_redis.url)
    try:
        async with ws_client(gateway.ws_url + "?user_id=a") as a, httpx.AsyncClient() as http:
            await a.subscribe(channel, "broadcast")
            await wait_until_async(lambda: _ready(http, gateway), 10)
            killed = time.monotonic()
            assert await admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub") >= 1
            # Back within well under a second, the client's channel included.
            await wait_until_async(
                lambda: _numsub(admin, f"broadcast.{channel}"), 2, message="resubscribed"
            )
            resubscribed = time.monotonic() - killed
            response = await http.post(gateway.url + "/api/event", json={"channel": channel})
            assert response.status_code == 200
            await a.expect("broadcast", channel=channel)
    finally:
        await admin.aclose()
    assert resubscribed < 1.0


async def _numsub(admin: aioredis.Redis, name: str) -> bool:
    reply = await admin.pubsub_numsub(name)
    return bool(reply[0][1] >= 1)


async def test_first_calls_after_restart_succeed(
    gateway: Gateway, own_redis: RedisServer, channel: str
) -> None:
    """Stale pooled connections after a restart are retried by redis-py, not shown to a
    client: once /readyz is green, publishes and presence joins on every pooled connection
    succeed; and green comes back within the documented bound."""
    async with contextlib.AsyncExitStack() as stack, httpx.AsyncClient(timeout=10) as http:
        clients = [
            await stack.enter_async_context(ws_client(gateway.ws_url + f"?user_id=u{i}"))
            for i in range(8)
        ]

        async def join_all(meta: dict[str, int]) -> None:
            # At once, so the store's pool holds one connection per concurrent call.
            await asyncio.gather(
                *(
                    c.request({"type": "presence_join", "channel": channel, "payload": meta})
                    for c in clients
                )
            )

        await join_all({"v": 1})
        for _ in range(3):
            assert (
                await http.post(gateway.url + "/api/event", json={"channel": channel})
            ).is_success
        own_redis.restart()
        back = time.monotonic()
        await wait_until_async(lambda: _ready(http, gateway), 15, message="green after restart")
        to_green = time.monotonic() - back
        response = await http.post(gateway.url + "/api/event", json={"channel": channel})
        assert response.status_code == 200, response.text
        await join_all({"v": 2})  # an error frame instead of the ack fails this
    # Subscriber backoff (0.5-1 s at most) + one probe interval + round trips.
    assert to_green <= 1.0 + INTERVAL + 1.0, to_green


async def test_green_soon_after_a_long_outage(gateway: Gateway, own_redis: RedisServer) -> None:
    """Redis away for 3 s (longer than redis-py's own retries): the subscriber's backoff stays
    capped low, so /readyz is green soon after Redis is back (the issue saw 4.4 s and the
    first delivery 6.5 s after, with a 5 s cap)."""
    broker = gateway.node.brokers[BROADCAST]
    async with httpx.AsyncClient(timeout=10) as http:
        await wait_until_async(lambda: _ready(http, gateway), 10)
        own_redis.stop()
        try:
            await wait_until_async(lambda: not broker.ready, 10, message="subscriber down")
            await asyncio.sleep(3)  # the outage itself: it lets the backoff grow to its cap
        finally:
            own_redis.start()
        back = time.monotonic()
        await wait_until_async(lambda: _ready(http, gateway), 15, message="green after outage")
        to_green = time.monotonic() - back
    # The subscriber's longest wait (1 s) + one probe interval + round trips.
    assert to_green <= 1.0 + INTERVAL + 1.0, to_green


async def test_probes_never_reach_clients(gateway: Gateway, channel: str) -> None:
    liveness: Liveness = gateway.node.liveness
    async with ws_client(gateway.ws_url + "?user_id=a") as a, httpx.AsyncClient() as http:
        await a.subscribe(channel, "broadcast", "presence")
        await wait_until_async(lambda: _ready(http, gateway), 10)
        before = liveness._probes[0]._seq
        await wait_until_async(lambda: liveness._probes[0]._seq >= before + 3, 5)
        await http.post(gateway.url + "/api/event", json={"channel": channel, "event": "last"})
        # Frames arrive in order: everything before "last" was received by then.
        frame = await a.recv()
        assert frame["type"] == "broadcast" and frame["event"] == "last", frame


async def test_seed_patterns_never_see_a_probe(gateway: Gateway, own_redis: RedisServer) -> None:
    seed = aioredis.Redis.from_url(own_redis.url)
    pubsub = seed.pubsub()
    try:
        await pubsub.psubscribe("broadcast.*", "presence.*")
        await pubsub.get_message(timeout=1)
        await pubsub.get_message(timeout=1)
        liveness = gateway.node.liveness
        before = liveness._probes[0]._seq
        await wait_until_async(lambda: liveness._probes[0]._seq >= before + 3, 5)
        assert await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.3) is None
        # They do travel on Redis, under the reserved name.
        names = await seed.pubsub_channels(f"{RESERVED_PREFIX}*")
        assert f"{liveness.channel}.broadcast".encode() in names
    finally:
        await pubsub.aclose()
        await seed.aclose()


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "subscribe", "channel": RESERVED_PREFIX + ".probe.x", "listen": ["broadcast"]},
        {"type": "broadcast", "channel": RESERVED_PREFIX, "event": "e", "ref": 1},
        {"type": "presence_join", "channel": RESERVED_PREFIX + "x", "payload": {}},
    ],
)
async def test_clients_cannot_use_reserved_channels(frame: dict[str, object]) -> None:
    async with run_gateway(make_settings()) as gw:
        async with ws_client(gw.ws_url + "?user_id=a") as a, httpx.AsyncClient() as http:
            await a.send(frame)
            error = await a.expect("error")
            assert error["code"] == "invalid_message"
            assert "reserved for the gateway" in error["message"]
            # The connection lives on.
            await a.subscribe("ok", "broadcast")
            response = await http.post(
                gw.url + "/api/event", json={"channel": RESERVED_PREFIX + ".probe.x"}
            )
            assert response.status_code == 400
            assert "reserved for the gateway" in response.json()["error"]
