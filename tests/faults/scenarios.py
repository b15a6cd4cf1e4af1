"""Each fault of issue #10 as one coroutine: its own real servers and gateway processes, the
harness's traffic, the fault injected and healed. Returns the :class:`Figures`.

Shared by the suite (which asserts bounds) and ``python -m tests.faults.measure`` (which
prints them). Durations are parameters: the suite uses short ones to stay within its time
box, the measuring tool the issue's (7 s down, 12 s frozen).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import redis

from realtime.testing.gateway import GatewayProcess, spawn_gateway
from realtime.testing.services import (
    LOCALHOST,
    RedisSentinelSetup,
    RedisServer,
    native_redis,
    redis_client,
    redis_sentinel_setup,
)
from realtime.testing.waiting import wait_until, wait_until_async
from tests.faults.harness import Figures, Traffic, member, run_fault

Scenario = Callable[..., Awaitable[Figures]]

# Added to every gateway process's environment: ``measure --gateway-src DIR`` puts another
# checkout's code first on the gateways' path, to measure it with this same harness.
GATEWAY_ENV: dict[str, str] = {}


def gateway(env: Mapping[str, str], log_path: Path) -> AbstractAsyncContextManager[GatewayProcess]:
    return spawn_gateway({**env, **GATEWAY_ENV}, str(log_path))


def new_channel() -> str:
    return f"fault-{uuid.uuid4().hex[:10]}"


def redis_env(url: str, **extra: str) -> dict[str, str]:
    return {"BROADCAST_MQ_TYPE": "redis", "PRESENCE_STORE": "redis", "REDIS_URL": url, **extra}


def _redis_pid(server: RedisServer) -> int:
    with redis_client(server.host, server.port) as client:
        return int(client.info("server")["process_id"])


async def _one_gateway_on_redis(
    name: str,
    workdir: Path,
    server: RedisServer,
    inject: Callable[[], Awaitable[None]],
    heal: Callable[[], Awaitable[None]],
    recover_within: float = 30.0,
) -> Figures:
    """One gateway on ``server``, a member present throughout, the backend and subscriber on
    that gateway: the shape of the issue's Why section."""
    channel = new_channel()
    async with gateway(redis_env(server.url), workdir / f"{name}.log") as one:
        async with member(one.ws_url, "alice", channel):
            traffic = Traffic(one.url, one.ws_url, [one.url], channel)
            return await run_fault(
                name,
                traffic,
                inject,
                heal,
                recover_within=recover_within,
                presence=(one.ws_url, {"alice"}),
            )


async def redis_restart(workdir: Path, down: float = 7.0) -> Figures:
    """Redis SIGKILLed, down for ``down`` s, started again empty on the same port."""
    with native_redis() as server:

        async def inject() -> None:
            server.kill()
            await asyncio.sleep(down)  # the outage itself

        async def heal() -> None:
            await asyncio.to_thread(server.start)

        return await _one_gateway_on_redis("redis restart", workdir, server, inject, heal)


async def redis_freeze(workdir: Path, frozen: float = 12.0) -> Figures:
    """Redis SIGSTOPped for ``frozen`` s, then SIGCONT: connections stay open, nothing answers."""
    with native_redis() as server:
        pid = _redis_pid(server)

        async def inject() -> None:
            os.kill(pid, signal.SIGSTOP)
            try:
                await asyncio.sleep(frozen)  # the freeze itself
            except BaseException:
                os.kill(pid, signal.SIGCONT)
                raise

        async def heal() -> None:
            os.kill(pid, signal.SIGCONT)

        return await _one_gateway_on_redis("redis SIGSTOP", workdir, server, inject, heal)


async def redis_client_kill(workdir: Path) -> Figures:
    """``CLIENT KILL TYPE pubsub``: every subscriber connection cut, Redis itself fine."""
    with native_redis() as server:

        async def inject() -> None:
            with redis_client(server.host, server.port) as client:
                killed = client.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
            assert int(killed) >= 1, "no pubsub connection to kill"

        async def heal() -> None:
            pass

        return await _one_gateway_on_redis("CLIENT KILL TYPE pubsub", workdir, server, inject, heal)


async def redis_debug_sleep(workdir: Path, asleep: float = 5.0) -> Figures:
    """``DEBUG SLEEP``: Redis busy for ``asleep`` s (a slow Lua script or a huge KEYS)."""
    with native_redis("--enable-debug-command", "local") as server:

        def sleep_redis() -> None:
            client = redis.Redis(host=server.host, port=server.port, socket_timeout=asleep + 10)
            with client:
                client.execute_command("DEBUG", "SLEEP", str(asleep))  # type: ignore[no-untyped-call]

        async def inject() -> None:
            await asyncio.to_thread(sleep_redis)  # returns when Redis wakes up

        async def heal() -> None:
            pass

        return await _one_gateway_on_redis("redis DEBUG SLEEP", workdir, server, inject, heal)


async def redis_flushall(workdir: Path) -> Figures:
    """``FLUSHALL``: Redis up throughout but its data (the presence keys) gone."""
    with native_redis() as server:

        async def inject() -> None:
            with redis_client(server.host, server.port) as client:
                client.flushall()

        async def heal() -> None:
            pass

        return await _one_gateway_on_redis("redis FLUSHALL", workdir, server, inject, heal)


@contextlib.contextmanager
def _sentinel_with_replica() -> Iterator[tuple[RedisSentinelSetup, RedisServer]]:
    with redis_sentinel_setup(1) as setup:
        assert setup.master is not None
        with native_redis("--replicaof", LOCALHOST, str(setup.master.port)) as replica:
            host, port = setup.sentinels[0]

            def replica_known() -> bool:
                with redis_client(host, port) as client:
                    replicas = client.sentinel_slaves(setup.master_name)
                return any(
                    int(r["port"]) == replica.port
                    and "s_down" not in r["flags"]
                    and r.get("master-link-status") == "ok"
                    for r in replicas
                )

            # Sentinel learns of replicas from the master's INFO, every 10 s.
            wait_until(replica_known, 25, interval=0.2, message="sentinel knows the replica")
            yield setup, replica


async def sentinel_failover(workdir: Path) -> Figures:
    """The Sentinel master SIGKILLed; the sentinel promotes the replica (2 s down-after)."""
    with _sentinel_with_replica() as (setup, replica):
        assert setup.master is not None
        master = setup.master
        sentinels = ",".join(f"{h}:{p}" for h, p in setup.sentinels)
        env = {
            "BROADCAST_MQ_TYPE": "redis",
            "PRESENCE_STORE": "redis",
            "REDIS_SENTINELS": sentinels,
            "REDIS_SENTINEL_MASTER": setup.master_name,
        }
        channel = new_channel()

        async def inject() -> None:
            master.kill()

        async def heal() -> None:
            def promoted() -> bool:
                address = setup.master_address()
                return address is not None and address[1] == replica.port

            await wait_until_async(
                lambda: asyncio.to_thread(promoted), 30, interval=0.1, message="failover"
            )

        async with gateway(env, workdir / "sentinel.log") as one:
            async with member(one.ws_url, "alice", channel):
                traffic = Traffic(one.url, one.ws_url, [one.url], channel)
                return await run_fault(
                    "Sentinel failover", traffic, inject, heal, presence=(one.ws_url, {"alice"})
                )


async def gateway_kill(workdir: Path, ttl: int = 3) -> Figures:
    """One of two gateways SIGKILLed: the other keeps delivering; the dead one's member
    leaves presence within PRESENCE_TTL_SECONDS (``ttl``) plus the reap interval."""
    with native_redis() as server:
        env = redis_env(server.url, PRESENCE_TTL_SECONDS=str(ttl))
        channel = new_channel()
        async with (
            gateway(env, workdir / "survivor.log") as survivor,
            gateway(env, workdir / "victim.log") as victim,
            member(survivor.ws_url, "alice", channel),
            member(victim.ws_url, "bob", channel),
        ):
            traffic = Traffic(survivor.url, survivor.ws_url, [survivor.url], channel)

            async def inject() -> None:
                victim.process.kill()
                await asyncio.to_thread(victim.process.wait, 10)

            async def heal() -> None:
                pass

            return await run_fault(
                "gateway SIGKILL",
                traffic,
                inject,
                heal,
                presence=(survivor.ws_url, {"alice"}),
                presence_within=ttl + 15,
            )


async def gateway_sigterm(workdir: Path) -> Figures:
    """One of two gateways gets SIGTERM (a rolling deploy) while the backend publishes through
    a balancer that follows /readyz: no post may go unanswered, the subscriber on the other
    instance keeps receiving, and the stopped instance's member leaves presence at once (its
    leave published), not after PRESENCE_TTL_SECONDS (left at its default, 60 s)."""
    with native_redis() as server:
        env = redis_env(server.url)
        channel = new_channel()
        async with (
            gateway(env, workdir / "staying.log") as staying,
            gateway(env, workdir / "stopping.log") as stopping,
            member(staying.ws_url, "alice", channel),
            member(stopping.ws_url, "bob", channel),
        ):
            traffic = Traffic(
                [stopping.url, staying.url],
                staying.ws_url,
                [stopping.url, staying.url],
                channel,
                recover=[staying.url],
            )

            async def inject() -> None:
                stopping.process.send_signal(signal.SIGTERM)
                started = time.monotonic()
                await asyncio.to_thread(stopping.process.wait, 60)
                traffic.exit_after = time.monotonic() - started

            async def heal() -> None:
                pass

            return await run_fault(
                "gateway SIGTERM",
                traffic,
                inject,
                heal,
                presence=(staying.ws_url, {"alice"}),
                presence_within=30,
            )


async def kafka_restart(workdir: Path, down: float = 7.0) -> Figures:
    from realtime_kafka.testing import kafka_server

    with kafka_server() as kafka, native_redis() as presence:
        env = {
            "BROADCAST_MQ_TYPE": "kafka",
            "BROADCAST_MQ_ADDR": kafka.bootstrap,
            "BROADCAST_KAFKA_TOPIC": f"faults-{uuid.uuid4().hex[:8]}",
            "PRESENCE_STORE": "redis",
            "REDIS_URL": presence.url,
        }
        return await _one_gateway_on_mq(
            "Kafka restart", workdir, env, kafka.kill, kafka.start, down
        )


async def rabbitmq_restart(workdir: Path, down: float = 7.0) -> Figures:
    from realtime_rabbitmq.testing import rabbitmq_server

    with rabbitmq_server() as rabbit, native_redis() as presence:
        env = {
            "BROADCAST_MQ_TYPE": "rabbitmq",
            "BROADCAST_RABBITMQ_URL": rabbit.url,
            "PRESENCE_STORE": "redis",
            "REDIS_URL": presence.url,
        }
        return await _one_gateway_on_mq(
            "RabbitMQ restart", workdir, env, rabbit.kill, rabbit.start, down
        )


async def _one_gateway_on_mq(
    name: str,
    workdir: Path,
    env: dict[str, str],
    kill: Callable[[], None],
    start: Callable[[], None],
    down: float,
) -> Figures:
    channel = new_channel()

    async def inject() -> None:
        await asyncio.to_thread(kill)
        await asyncio.sleep(down)  # the outage itself

    async def heal() -> None:
        await asyncio.to_thread(start)

    async with gateway(env, workdir / f"{name.split()[0].lower()}.log") as one:
        async with member(one.ws_url, "alice", channel):
            traffic = Traffic(one.url, one.ws_url, [one.url], channel)
            return await run_fault(
                name, traffic, inject, heal, recover_within=60, presence=(one.ws_url, {"alice"})
            )


SCENARIOS: dict[str, Scenario] = {
    "redis-restart": redis_restart,
    "redis-freeze": redis_freeze,
    "client-kill": redis_client_kill,
    "debug-sleep": redis_debug_sleep,
    "flushall": redis_flushall,
    "sentinel-failover": sentinel_failover,
    "gateway-kill": gateway_kill,
    "gateway-sigterm": gateway_sigterm,
    "kafka-restart": kafka_restart,
    "rabbitmq-restart": rabbitmq_restart,
}
