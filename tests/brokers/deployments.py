"""Helpers for tests on Sentinel and Cluster deployments."""

from __future__ import annotations

import uuid

import redis
from redis.crc import key_slot

from realtime.brokers.redis.common import topic
from realtime.config import RedisDeployment
from realtime.testing.services import RedisClusterSetup, RedisSentinelSetup


def sentinel_deployment(setup: RedisSentinelSetup) -> RedisDeployment:
    # The URL only carries the master's password and database: its host is never dialled.
    return RedisDeployment("redis://127.0.0.1:6379/0", tuple(setup.sentinels), setup.master_name)


def slot_owner(cluster: RedisClusterSetup, slot: int) -> tuple[str, int]:
    """The (host, port) of the master serving ``slot``, as the cluster itself says."""
    host, port = cluster.nodes[0]
    with redis.Redis(host=host, port=port, socket_timeout=5) as client:
        for start, end, master, *_ in client.execute_command("CLUSTER", "SLOTS"):
            if start <= slot <= end:
                return (master[0].decode(), int(master[1]))
    raise LookupError(f"no master serves slot {slot}")


def channel_on_node(cluster: RedisClusterSetup, index: int) -> str:
    """A fresh channel whose broadcast topic lives on ``cluster.nodes[index]``."""
    ranges: list[tuple[int, int]] = []
    host, port = cluster.nodes[0]
    with redis.Redis(host=host, port=port, socket_timeout=5) as client:
        for start, end, master, *_ in client.execute_command("CLUSTER", "SLOTS"):
            if (master[0].decode(), int(master[1])) == tuple(cluster.nodes[index]):
                ranges.append((start, end))
    assert ranges, f"node {cluster.nodes[index]} serves no slot"
    while True:
        name = f"contract-{uuid.uuid4().hex[:12]}"
        slot = key_slot(topic("broadcast", name).encode())
        if any(start <= slot <= end for start, end in ranges):
            return name


def sentinel_env(setup: RedisSentinelSetup) -> dict[str, str]:
    return {
        "BROADCAST_MQ_TYPE": "redis",
        "PRESENCE_STORE": "redis",
        "REDIS_SENTINELS": ",".join(f"{h}:{p}" for h, p in setup.sentinels),
        "REDIS_SENTINEL_MASTER": setup.master_name,
        # Blank out what the test process may carry: they conflict with REDIS_SENTINELS.
        "REDIS_URL": "",
        "REDIS_ADDR": "",
        "REDIS_CLUSTER": "",
    }


def cluster_env(cluster: RedisClusterSetup) -> dict[str, str]:
    return {
        "BROADCAST_MQ_TYPE": "redis",
        "PRESENCE_STORE": "redis",
        "REDIS_CLUSTER": "1",
        "REDIS_URL": cluster.url,
        "REDIS_SENTINELS": "",
        "REDIS_SENTINEL_MASTER": "",
    }
