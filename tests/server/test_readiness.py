"""/readyz against a real Redis of its own: frozen (SIGSTOP) and thawed, restarted, its Pub/Sub
connections killed, a subscription silently lost; probes never reach a client, and clients
cannot use the gateway's reserved channels."""

from __future__ import annotations

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
            assert not body["presence_store"]["ok"]
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


async def test_first_publish_after_restart_succeeds(
    gateway: Gateway, own_redis: RedisServer, channel: str
) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        # Warm the command pool: these connections go stale across the restart.
        for _ in range(3):
            assert (
                await http.post(gateway.url + "/api/event", json={"channel": channel})
            ).is_success
        own_redis.restart()
        await wait_until_async(lambda: _ready(http, gateway), 15, message="green after restart")
        response = await http.post(gateway.url + "/api/event", json={"channel": channel})
        assert response.status_code == 200, response.text


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
