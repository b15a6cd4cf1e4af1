"""Standalone, Sentinel and Cluster: settings, presence, failover, resharding, two gateways.

The contract suite runs on Sentinel and Cluster in tests/brokers/test_contract.py; this module
covers what is particular to each deployment, against real redis-server and sentinel processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from redis.crc import key_slot

from realtime.brokers.redis.cluster import RedisClusterBroker
from realtime.brokers.redis.common import topic
from realtime.brokers.redis.factory import for_deployment
from realtime.config import OPTIONS, RedisDeployment, load_settings
from realtime.errors import ConfigError
from realtime.presence.base import Entry
from realtime.presence.redis import RedisPresence
from realtime.redisconn import client as redis_client
from realtime.testing.contract import Inbox
from realtime.testing.gateway import GatewayProcess, spawn_gateway, ws_client
from realtime.testing.services import (
    RedisClusterSetup,
    RedisSentinelSetup,
    redis_cluster,
    redis_sentinel_setup,
    redis_server,
)
from realtime.testing.waiting import wait_until, wait_until_async
from realtime.wire.messages import Kind, Member
from tests.brokers.deployments import (
    channel_on_node,
    cluster_env,
    sentinel_deployment,
    sentinel_env,
    slot_owner,
)

TIMEOUT = 15.0

# --- settings -------------------------------------------------------------------------------


def settings(**env: str) -> Any:
    return load_settings(env, env_file=None)


def test_standalone_is_the_default() -> None:
    deployment = settings().redis
    assert deployment.mode == "standalone"
    assert deployment.url == "redis://127.0.0.1:6379/0"


def test_sentinel_settings() -> None:
    s = settings(
        REDIS_SENTINELS="10.0.0.1:26379, :26380",
        REDIS_SENTINEL_MASTER="main",
        REDIS_SENTINEL_PASSWORD="sp",
        REDIS_PASSWORD="mp",
        REDIS_DB="2",
    )
    deployment = s.redis
    assert deployment.mode == "sentinel"
    assert deployment.sentinels == (("10.0.0.1", 26379), ("127.0.0.1", 26380))
    assert deployment.sentinel_master == "main"
    assert deployment.sentinel_password == "sp"
    assert deployment.url.endswith("/2") and ":mp@" in deployment.url
    assert "sp" not in repr(s) and "mp" not in s.redis.display


def test_cluster_settings() -> None:
    deployment = settings(REDIS_CLUSTER="1", REDIS_ADDR="10.0.0.5:7000").redis
    assert deployment.mode == "cluster"
    assert deployment.cluster_pubsub == "sharded"
    assert deployment.url == "redis://10.0.0.5:7000/0"
    classic = settings(REDIS_CLUSTER="true", REDIS_CLUSTER_PUBSUB="classic").redis
    assert classic.cluster_pubsub == "classic"


def test_seed_broker_settings_keep_working_standalone() -> None:
    s = settings(BROADCAST_MQ_ADDR="10.0.0.9:6380", BROADCAST_MQ_DB="1")
    assert s.get("BROADCAST_MQ_ADDR") == "10.0.0.9:6380"
    # Another broker's address is its own business, whatever the Redis deployment.
    settings(BROADCAST_MQ_TYPE="kafka", BROADCAST_MQ_ADDR="k:9092", REDIS_CLUSTER="1")


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"REDIS_SENTINELS": "h:26379"}, "REDIS_SENTINEL_MASTER"),
        ({"REDIS_SENTINEL_MASTER": "m"}, "REDIS_SENTINEL_MASTER"),
        ({"REDIS_SENTINEL_PASSWORD": "p"}, "REDIS_SENTINEL_PASSWORD"),
        ({"REDIS_SENTINELS": "nonsense", "REDIS_SENTINEL_MASTER": "m"}, "REDIS_SENTINELS"),
        ({"REDIS_SENTINELS": " , ", "REDIS_SENTINEL_MASTER": "m"}, "REDIS_SENTINELS"),
        (
            {"REDIS_SENTINELS": "h:1", "REDIS_SENTINEL_MASTER": "m", "REDIS_CLUSTER": "1"},
            "REDIS_CLUSTER",
        ),
        (
            {"REDIS_SENTINELS": "h:1", "REDIS_SENTINEL_MASTER": "m", "REDIS_ADDR": "x:1"},
            "REDIS_ADDR",
        ),
        (
            {"REDIS_SENTINELS": "h:1", "REDIS_SENTINEL_MASTER": "m", "REDIS_URL": "redis://x"},
            "REDIS_URL",
        ),
        (
            {"REDIS_SENTINELS": "h:1", "REDIS_SENTINEL_MASTER": "m", "BROADCAST_MQ_ADDR": "x:1"},
            "BROADCAST_MQ_ADDR",
        ),
        ({"REDIS_CLUSTER": "maybe"}, "REDIS_CLUSTER"),
        ({"REDIS_CLUSTER": "1", "REDIS_DB": "3"}, "REDIS_DB"),
        ({"REDIS_CLUSTER": "1", "REDIS_URL": "redis://h:7000/2"}, "REDIS_URL"),
        ({"REDIS_CLUSTER": "1", "BROADCAST_MQ_PASSWORD": "p"}, "BROADCAST_MQ_PASSWORD"),
        ({"REDIS_CLUSTER": "1", "REDIS_CLUSTER_PUBSUB": "fast"}, "REDIS_CLUSTER_PUBSUB"),
        ({"REDIS_CLUSTER_PUBSUB": "classic"}, "REDIS_CLUSTER_PUBSUB"),
    ],
)
def test_bad_combinations_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings(**env)
    assert caught.value.variable == variable


def test_deployment_settings_are_documented_options() -> None:
    # tests/test_cli.py checks that `realtime serve --help` prints every one of OPTIONS.
    names = {option.name for option in OPTIONS}
    assert {"REDIS_SENTINELS", "REDIS_SENTINEL_MASTER", "REDIS_SENTINEL_PASSWORD"} <= names
    assert {"REDIS_CLUSTER", "REDIS_CLUSTER_PUBSUB"} <= names


# --- servers --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sentinel() -> Iterator[RedisSentinelSetup]:
    with redis_sentinel_setup() as setup:
        yield setup


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisClusterSetup]:
    with redis_cluster() as started:
        yield started


def cluster_deployment(cluster: RedisClusterSetup, pubsub: str = "sharded") -> RedisDeployment:
    return RedisDeployment(cluster.url, cluster=True, cluster_pubsub=pubsub)


@pytest.fixture
def name() -> str:
    return f"dep-{uuid.uuid4().hex[:12]}"


# --- presence -------------------------------------------------------------------------------


async def check_presence_store(deployment: RedisDeployment, channel: str) -> None:
    store = RedisPresence(redis_client(deployment), ttl=60)  # type: ignore[arg-type]
    try:
        # Many channels in one call: on a cluster their keys live in different slots.
        others = [f"{channel}-{i}" for i in range(20)]
        await store.refresh(
            [Entry(channel, "i.1", Member("a", {"n": 1}, 5)), Entry(channel, "i.2", Member("b"))]
            + [Entry(other, "i.3", Member("x")) for other in others]
        )
        assert sorted(m.user_id for m in (await store.sync(channel)).members) == ["a", "b"]
        assert {m.user_id for other in others for m in (await store.sync(other)).members} == {"x"}
        assert set(await store.reap(others)) == set(others)
        await store.join(channel, "i.1", Member("a", {"n": 2}, 6))
        await store.leave(channel, "i.2", "b")
        assert (await store.sync(channel)).members == [Member("a", {"n": 2}, 6)]
        # The leave grace's scripts and key, in the channel's slot too.
        graced = RedisPresence(redis_client(deployment), ttl=60, leave_grace=60)  # type: ignore[arg-type]
        try:
            assert await graced.linger(channel, "i.1", "a")
            assert await graced.join(channel, "i.4", Member("a", {"n": 2}, 7)) == ""
        finally:
            await graced.close()
    finally:
        await store.close()


@pytest.mark.integration
async def test_presence_store_on_sentinel(sentinel: RedisSentinelSetup, name: str) -> None:
    await check_presence_store(sentinel_deployment(sentinel), name)


@pytest.mark.integration
async def test_presence_store_on_cluster(cluster: RedisClusterSetup, name: str) -> None:
    await check_presence_store(cluster_deployment(cluster), name)
    # The seed's layout, readable on the cluster: one hash per channel.
    raw = aioredis.RedisCluster.from_url(cluster.url)
    try:
        await RedisPresence(redis_client(cluster_deployment(cluster)), 60).close()  # type: ignore[arg-type]
        value = json.loads(await raw.hget(f"presence:{name}", "a"))  # type: ignore[misc]
        assert value == {"user_id": "a", "meta": {"n": 2}, "updated_at": 6}
    finally:
        await raw.aclose()


@pytest.mark.integration
@pytest.mark.parametrize("shape", ["a{%s}b", "a}%s", "a{}%s", "{%s", "x}{%s}"])
async def test_presence_store_on_cluster_channel_with_braces(
    cluster: RedisClusterSetup, shape: str
) -> None:
    # Braces in a channel name change how Redis hashes presence:<channel>; the other keys of
    # the channel must follow it into the same slot.
    await check_presence_store(cluster_deployment(cluster), shape % uuid.uuid4().hex[:6])


# --- Sentinel failover ----------------------------------------------------------------------


@pytest.mark.integration
async def test_broker_follows_a_sentinel_failover(name: str) -> None:
    """A replica joins, the sentinel fails the master over to it, and the broker's subscriber
    and publisher move to the new master by themselves."""
    # Its own setup: the failover changes which server is master for good.
    with redis_sentinel_setup() as setup, redis_server() as replica:
        if setup.master is None or replica.kind != "native":
            pytest.skip("needs servers of our own: the test turns one into a replica")
        master = setup.master
        with redis.Redis(host=replica.host, port=replica.port) as r:
            r.execute_command("REPLICAOF", master.host, str(master.port))

        def sentinel_call(*args: str) -> Any:
            host, port = setup.sentinels[0]
            with redis.Redis(host=host, port=port, socket_timeout=5) as s:
                return s.execute_command(*args)

        def replica_known() -> bool:
            replicas = sentinel_call("SENTINEL", "REPLICAS", setup.master_name)
            # redis-py parses each into a dict with is_sdown, is_disconnected, ...
            return bool(replicas) and not any(
                r.get("is_sdown")
                or r.get("is_disconnected")
                or r.get("master-link-status", "ok") != "ok"
                for r in replicas
            )

        # The sentinel learns of replicas from the master's INFO, every 10 s at most.
        await asyncio.to_thread(wait_until, replica_known, 20.0, 0.2, message="replica seen")
        deployment = sentinel_deployment(setup)
        a, b = for_deployment(deployment), for_deployment(deployment)
        inbox = Inbox()
        await a.start(Inbox())
        await b.start(inbox)
        try:
            await b.subscribe("broadcast", name)
            await a.publish("broadcast", name, b"before")
            await inbox.wait_for(lambda: inbox.on("broadcast", name) == [b"before"], TIMEOUT)

            def failover_accepted() -> bool:
                # The sentinel refuses (NOGOODSLAVE) until its view of the replica's link is
                # fresh, which it refreshes every few seconds: ask again until it accepts.
                try:
                    sentinel_call("SENTINEL", "FAILOVER", setup.master_name)
                except redis.ResponseError as exc:
                    if "NOGOODSLAVE" in str(exc):
                        return False
                    raise
                return True

            await asyncio.to_thread(
                wait_until, failover_accepted, 30.0, 0.5, message="sentinel accepts the failover"
            )
            await wait_until_async(
                lambda: setup.master_address() == replica.address,
                timeout=TIMEOUT,
                message="sentinel names the replica as master",
            )
            await publish_until_delivered(a, inbox, "broadcast", name, TIMEOUT)
            assert a.ready and b.ready
            with redis.Redis(host=replica.host, port=replica.port) as r:
                assert r.info("replication")["role"] == "master"
        finally:
            await a.close()
            await b.close()


async def publish_until_delivered(
    broker: Any, inbox: Inbox, kind: Kind, channel: str, timeout: float
) -> None:
    """Publish until one arrives: publishing and the subscription both resume by themselves."""
    before = len(inbox.on(kind, channel))

    async def one_delivered() -> bool:
        # A publish refused while the MQ is away is a "not yet", as is one not delivered.
        await broker.publish(kind, channel, b"after")
        return await inbox.arrived(lambda: len(inbox.on(kind, channel)) > before, 0.5)

    await wait_until_async(
        one_delivered, timeout, 0.1, ignore=(Exception,), message="a delivery after the change"
    )


# --- Cluster: resharding and seed interop ---------------------------------------------------


def node_id(host: str, port: int) -> str:
    with redis.Redis(host=host, port=port) as r:
        return str(r.execute_command("CLUSTER", "MYID").decode())


@pytest.mark.integration
async def test_cluster_subscription_follows_a_migrated_slot(cluster: RedisClusterSetup) -> None:
    if cluster.kind != "native":
        pytest.skip("moves a slot: needs a cluster of our own")
    channel = channel_on_node(cluster, 1)
    slot = key_slot(topic("broadcast", channel).encode())
    source, target = tuple(cluster.nodes[1]), tuple(cluster.nodes[2])
    deployment = cluster_deployment(cluster)
    a, b = RedisClusterBroker(deployment), RedisClusterBroker(deployment)
    inbox = Inbox()
    await a.start(Inbox())
    await b.start(inbox)
    try:
        await b.subscribe("broadcast", channel)
        await a.publish("broadcast", channel, b"before")
        await inbox.wait_for(lambda: inbox.on("broadcast", channel) == [b"before"], TIMEOUT)

        # The steps of a reshard. Keys an earlier test left in the slot (the cluster is shared
        # by the module) move with it, or the last step is refused.
        source_id, target_id = node_id(*source), node_id(*target)
        with redis.Redis(host=target[0], port=target[1]) as t:
            t.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        with redis.Redis(host=source[0], port=source[1]) as s:
            s.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
            while keys := s.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
                s.execute_command("MIGRATE", target[0], target[1], "", 0, 5000, "KEYS", *keys)
        for host, port in cluster.nodes:
            with redis.Redis(host=host, port=port) as n:
                n.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
        await asyncio.to_thread(
            wait_until, lambda: slot_owner(cluster, slot) == target, TIMEOUT, message="slot moved"
        )

        await publish_until_delivered(a, inbox, "broadcast", channel, TIMEOUT)
        await wait_until_async(lambda: b.ready, timeout=TIMEOUT, message="ready after the move")
        assert topic("broadcast", channel) in b._readers[f"{target[0]}:{target[1]}"].topics
    finally:
        await a.close()
        await b.close()


@pytest.mark.integration
async def test_cluster_classic_mode_interoperates_with_a_seed_gateway(
    cluster: RedisClusterSetup, name: str
) -> None:
    """A seed gateway on a cluster uses PUBLISH and PSUBSCRIBE on whichever node it reached;
    classic Pub/Sub is copied to every node, so classic mode meets it wherever it is."""
    broker = RedisClusterBroker(cluster_deployment(cluster, "classic"))
    inbox = Inbox()
    await broker.start(inbox)
    # The seed's connections, on the node our broker does not read from.
    far = max(f"{h}:{p}" for h, p in cluster.nodes).rpartition(":")
    seed = aioredis.Redis(host=far[0], port=int(far[2]))
    listener = seed.pubsub()
    try:
        await broker.subscribe("broadcast", name)
        await listener.psubscribe("broadcast.*")
        await seed.publish(f"broadcast.{name}", b"from seed")
        await inbox.wait_for(lambda: inbox.on("broadcast", name) == [b"from seed"], TIMEOUT)
        await broker.publish("broadcast", name, b"from us")

        async def seed_got_ours() -> bool:
            message = await listener.get_message(ignore_subscribe_messages=True, timeout=0.2)
            return message is not None and message["data"] == b"from us"

        await wait_until_async(seed_got_ours, timeout=TIMEOUT, message="seed receives ours")
    finally:
        await listener.aclose()  # type: ignore[no-untyped-call]
        await seed.aclose()
        await broker.close()


# --- two real gateways per deployment -------------------------------------------------------


@contextlib.asynccontextmanager
async def two_gateways(
    env: dict[str, str], tmp_path: Path
) -> AsyncIterator[tuple[GatewayProcess, GatewayProcess]]:
    async with spawn_gateway(env, str(tmp_path / "g1.log")) as g1:
        async with spawn_gateway(env, str(tmp_path / "g2.log")) as g2:
            yield g1, g2


async def exchange_both_ways(g1: GatewayProcess, g2: GatewayProcess, channel: str) -> None:
    """A client on each gateway: a broadcast and a presence join travel each way."""
    async with (
        ws_client(g1.ws_url + "?user_id=one") as one,
        ws_client(g2.ws_url + "?user_id=two") as two,
    ):
        assert (await one.subscribe(channel))["users"] == []  # type: ignore[index]
        await two.subscribe(channel)
        await one.send({"type": "broadcast", "channel": channel, "event": "e1", "payload": 1})
        for client in (one, two):
            await client.expect("broadcast", event="e1", user_id="one", payload=1)
        await two.send({"type": "broadcast", "channel": channel, "event": "e2", "payload": 2})
        for client in (one, two):
            await client.expect("broadcast", event="e2", user_id="two", payload=2)
        # Each joiner hears its own join too, through the bus, in channel order.
        await one.send({"type": "presence_join", "channel": channel, "payload": {"n": 1}})
        for client in (two, one):
            await client.expect("presence_join", user_id="one", meta={"n": 1})
        await two.send({"type": "presence_join", "channel": channel, "payload": {"n": 2}})
        for client in (one, two):
            await client.expect("presence_join", user_id="two", meta={"n": 2})
        # Both joins are in the shared store: a late subscriber on either side sees them.
        async with ws_client(g1.ws_url + "?user_id=late") as late:
            sync = await late.subscribe(channel, "presence")
            assert sorted(u["user_id"] for u in sync["users"]) == ["one", "two"]  # type: ignore[index]


@pytest.mark.integration
async def test_two_gateways_on_sentinel(
    sentinel: RedisSentinelSetup, tmp_path: Path, name: str
) -> None:
    async with two_gateways(sentinel_env(sentinel), tmp_path) as (g1, g2):
        await exchange_both_ways(g1, g2, name)


@pytest.mark.integration
async def test_two_gateways_on_cluster(
    cluster: RedisClusterSetup, tmp_path: Path, name: str
) -> None:
    async with two_gateways(cluster_env(cluster), tmp_path) as (g1, g2):
        await exchange_both_ways(g1, g2, name)
