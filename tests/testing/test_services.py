"""realtime.testing.services: the shared plumbing and the Redis launchers, against the real
servers they start.

Each server starts once per module; the restart test runs last within its group so that
earlier tests see a server that has not been restarted under them.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest
import redis
import redis.asyncio as aioredis
import redis.exceptions as redis_errors
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.sentinel import Sentinel

from realtime.testing.services import (
    RedisClusterSetup,
    RedisSentinelSetup,
    RedisServer,
    RestartUnsupported,
    ServiceError,
    backend,
    native_redis,
    parse_hostport,
    redis_cluster,
    redis_sentinel_setup,
    redis_server,
)
from realtime.testing.services import base as services_base
from realtime.testing.services import redis as redis_services
from realtime.testing.waiting import port_open, wait_until, wait_until_async

native_only = pytest.mark.skipif(
    backend() != "native", reason="checks the processes the native launcher starts"
)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


# -- no server needed -----------------------------------------------------------------------


@pytest.mark.parametrize("forced", ["native", "docker", " Native "])
def test_the_backend_can_be_forced(monkeypatch: pytest.MonkeyPatch, forced: str) -> None:
    monkeypatch.setenv("REALTIME_SERVICES_BACKEND", forced)
    assert backend() == forced.strip().lower()


def test_parse_hostport() -> None:
    assert parse_hostport(" 10.0.0.1:7000 ", 6379) == ("10.0.0.1", 7000)
    assert parse_hostport("[::1]:26380", 26379) == ("::1", 26380)
    assert parse_hostport("redis-a", 26379) == ("redis-a", 26379)


def test_a_server_from_the_environment_is_used_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://example.invalid:6390/2")
    with redis_server() as server:
        assert (server.kind, server.host, server.port, server.url) == (
            "env",
            "example.invalid",
            6390,
            "redis://example.invalid:6390/2",
        )
        for action in (server.restart, server.stop, server.start, server.kill):
            with pytest.raises(RestartUnsupported, match="environment variable"):
                action()


def test_sentinels_and_cluster_nodes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REDIS_SENTINELS", "s1:26380,s2")
    monkeypatch.setenv("REDIS_SENTINEL_MASTER", "primary")
    monkeypatch.setenv("REDIS_CLUSTER_NODES", "n1:7000,n2:7001")
    with redis_sentinel_setup() as setup, redis_cluster() as cluster:
        assert setup.kind == cluster.kind == "env"
        assert (setup.sentinels, setup.master_name, setup.master) == (
            [("s1", 26380), ("s2", 26379)],
            "primary",
            None,
        )
        assert (cluster.nodes, cluster.url) == ([("n1", 7000), ("n2", 7001)], "redis://n1:7000")
        with pytest.raises(RestartUnsupported):
            cluster.restart()


# -- Redis ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_handle() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


@pytest.mark.integration
def test_redis_answers(redis_handle: RedisServer) -> None:
    with redis.Redis.from_url(redis_handle.url) as client:
        key = unique("k")
        client.set(key, b"v")
        assert client.get(key) == b"v"


@pytest.mark.integration
async def test_redis_restart_comes_back_empty_on_the_same_port(redis_handle: RedisServer) -> None:
    key, port = unique("k"), redis_handle.port
    client = aioredis.from_url(redis_handle.url)
    try:
        await client.set(key, b"v")
        try:
            # In a thread: a restart blocks, and the test's event loop must not.
            await asyncio.to_thread(redis_handle.restart)
        except RestartUnsupported as exc:
            pytest.skip(str(exc))
        assert redis_handle.port == port
        # The pooled connection died with the old server; redis-py reconnects on retry.
        assert await wait_until_async(
            client.ping, timeout=10, ignore=(redis_errors.ConnectionError,)
        )
        assert await client.get(key) is None
    finally:
        await client.aclose()


@pytest.mark.integration
@native_only
def test_a_closed_native_redis_leaves_nothing_behind() -> None:
    server = native_redis()
    tmp, port = server.tmp, server.port
    assert server.alive() and port_open("127.0.0.1", port) and tmp.is_dir()
    server.close()
    assert not server.alive()
    assert not port_open("127.0.0.1", port)
    assert not tmp.exists()
    assert server not in services_base._live
    server.close()  # twice is fine
    with pytest.raises(ServiceError, match="closed"):
        server.start()


@pytest.mark.integration
@native_only
def test_a_killed_native_redis_starts_again() -> None:
    with native_redis() as server:
        server.kill()
        assert not server.alive()
        server.start()
        with redis.Redis.from_url(server.url) as client:
            assert client.ping()


@pytest.mark.integration
@native_only
def test_a_start_failure_shows_the_log_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        monkeypatch.setattr(redis_services, "free_port", lambda: port)
        began = time.monotonic()
        with pytest.raises(ServiceError, match=r"(?i)address already in use"):
            native_redis()
        # The crashed process is noticed by the next poll, not at the start timeout.
        assert time.monotonic() - began < 10
    # The failed launch cleaned up after itself.
    assert not [s for s in services_base._live if isinstance(s, RedisServer) and s.port == port]


@pytest.mark.integration
@native_only
def test_servers_are_stopped_when_the_test_process_gets_sigterm() -> None:
    code = (
        "import sys, time\n"
        "from realtime.testing.services import redis_server\n"
        "server = redis_server()\n"
        "print(server.port, server.tmp, flush=True)\n"
        "time.sleep(60)\n"
    )
    env = {**os.environ, "REALTIME_SERVICES_BACKEND": "native"}
    env.pop("REDIS_URL", None)
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, env=env, text=True
    )
    try:
        assert child.stdout is not None
        port_text, tmp = child.stdout.readline().split()
        port = int(port_text)
        assert port_open("127.0.0.1", port)
        child.send_signal(signal.SIGTERM)
        assert child.wait(20) == 128 + signal.SIGTERM
        assert wait_until(lambda: not port_open("127.0.0.1", port), timeout=10)
        assert not os.path.exists(tmp)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()


# -- Redis Sentinel -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sentinel_setup() -> Iterator[RedisSentinelSetup]:
    with redis_sentinel_setup() as setup:
        yield setup


@pytest.mark.integration
async def test_sentinel_reports_the_master(sentinel_setup: RedisSentinelSetup) -> None:
    if sentinel_setup.master is not None:
        assert sentinel_setup.master_address() == sentinel_setup.master.address
    sentinel = Sentinel(sentinel_setup.sentinels, socket_timeout=2)
    try:
        host, port = await sentinel.discover_master(sentinel_setup.master_name)
        if sentinel_setup.master is not None:
            assert (host, port) == sentinel_setup.master.address
        master = sentinel.master_for(sentinel_setup.master_name)
        try:
            key = unique("k")
            await master.set(key, b"through-sentinel")
            assert await master.get(key) == b"through-sentinel"
        finally:
            await master.aclose()
    finally:
        for client in sentinel.sentinels:
            await client.aclose()


@pytest.mark.integration
@native_only
def test_closing_a_sentinel_setup_stops_its_master(sentinel_setup: RedisSentinelSetup) -> None:
    with redis_sentinel_setup() as setup:
        assert setup.master is not None
        master = setup.master
        master_tmp = master.tmp
    assert not master.alive() and not master_tmp.exists()
    assert not port_open(*master.address)
    assert not any(port_open(*address) for address in setup.sentinels)


# -- Redis Cluster --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisClusterSetup]:
    with redis_cluster() as started:
        yield started


@pytest.mark.integration
async def test_cluster_state_ok_on_every_node(cluster: RedisClusterSetup) -> None:
    for host, port in cluster.nodes:
        client = aioredis.Redis(host=host, port=port)
        try:
            info = await client.cluster("INFO")
            assert info["cluster_state"] == "ok"
        finally:
            await client.aclose()


@pytest.mark.integration
async def test_cluster_routes_keys_to_their_nodes(cluster: RedisClusterSetup) -> None:
    client = AsyncRedisCluster.from_url(cluster.url)
    try:
        keys = [unique(f"k{i}") for i in range(12)]
        for key in keys:
            await client.set(key, key.encode())
        for key in keys:
            assert await client.get(key) == key.encode()
        # Twelve random keys all landing on one of three masters would be a 1-in-177k chance:
        # more than one owner proves the client routed by slot, not to a single node.
        owners = {client.get_node_from_key(key).name for key in keys}
        assert len(owners) > 1
    finally:
        await client.aclose()
