"""How the gateway opens a Redis client: one place, shared by the redis broker and presence.

:func:`client` builds the right one for the deployment: a plain client (standalone), a client
of the master that the sentinels name, which follows a failover (Sentinel), or a cluster
client that routes each key to the node owning its slot (Cluster).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import Sentinel

from realtime.config import RedisDeployment

# Keepalive, and a bounded connect time so a dead host fails fast instead of hanging.
DEFAULTS: dict[str, Any] = {"socket_keepalive": True, "socket_connect_timeout": 5}

AnyRedis = aioredis.Redis | RedisCluster


def connect(url: str, **options: Any) -> aioredis.Redis:
    """A client for the standalone server at ``url`` with the gateway's defaults."""
    return aioredis.Redis.from_url(url, **DEFAULTS, **options)


def client(deployment: RedisDeployment, **options: Any) -> AnyRedis:
    """A client for ``deployment``; ``aclose()`` releases everything it opened."""
    if deployment.sentinels:
        return sentinel_master(deployment, **options)
    if deployment.cluster:
        return cluster(deployment, **options)
    return connect(deployment.url, **options)


def sentinel_master(deployment: RedisDeployment, **options: Any) -> aioredis.Redis:
    """A client of the master the sentinels name. Each new connection asks the sentinels
    again, so after a failover reconnecting lands on the new master."""
    assert deployment.sentinel_master is not None, "Settings require a master with sentinels"
    parts = urlsplit(deployment.url)
    master_options: dict[str, Any] = {"db": int(parts.path.strip("/") or 0)}
    if parts.username:
        master_options["username"] = unquote(parts.username)
    if parts.password:
        master_options["password"] = unquote(parts.password)
    sentinel_options: dict[str, Any] = {**DEFAULTS, "socket_timeout": 5}
    if deployment.sentinel_password:
        sentinel_options["password"] = deployment.sentinel_password
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        list(deployment.sentinels),
        sentinel_kwargs=sentinel_options,
        **DEFAULTS,
        **master_options,
        **options,
    )
    master = sentinel.master_for(deployment.sentinel_master, redis_class=_SentinelMaster)
    assert isinstance(master, _SentinelMaster)
    master.sentinels = sentinel
    return master


class _SentinelMaster(aioredis.Redis):
    """The master's client; closing it also closes the connections to the sentinels."""

    sentinels: Sentinel | None = None

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        if self.sentinels is not None:
            for sentinel in self.sentinels.sentinels:
                await sentinel.aclose()


def cluster(deployment: RedisDeployment, **options: Any) -> RedisCluster:
    """A cluster client that starts from ``deployment.url``; it learns the other nodes itself."""
    parts = urlsplit(deployment.url)
    # Settings allow only database 0 here; redis-py's cluster client takes no database at all.
    url = urlunsplit((parts.scheme, parts.netloc, "", parts.query, ""))
    return RedisCluster.from_url(url, **DEFAULTS, **options)


def node(deployment: RedisDeployment, host: str, port: int, **options: Any) -> aioredis.Redis:
    """A plain client of one cluster node, with the deployment's credentials and scheme."""
    parts = urlsplit(deployment.url)
    auth = parts.netloc.rpartition("@")[0]
    netloc = f"{auth}@{host}:{port}" if auth else f"{host}:{port}"
    return connect(urlunsplit((parts.scheme, netloc, "", parts.query, "")), **options)
