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
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import EqualJitterBackoff
from redis.exceptions import ConnectionError

from realtime.config import RedisDeployment

#: How long one read may wait for a Redis that accepted the connection: a frozen Redis
#: (SIGSTOP, a long DEBUG SLEEP) answers a command with an error after this, instead of
#: hanging. Timeouts are not retried (the command may have run), so a presence call to a frozen
#: Redis fails, and the client gets its error frame, after one COMMAND_TIMEOUT. A publish is
#: bounded from when it was asked, however many queued ahead of it: the pipelined publisher
#: fails it after PUBLISH_DEADLINE (this same 3 s; realtime.brokers.redis.common), the client
#: gets its 503 within 3 s.
COMMAND_TIMEOUT = 3.0
RETRIES = 3
RETRY_BASE = 0.05
RETRY_CAP = 0.5


def retry() -> Retry:
    """redis-py's retry: a connection error (a stale pooled connection after a Redis restart,
    a reset) reconnects and sends again after 25 to 50 ms, then up to 0.5 s, three times, before
    the caller sees an error. Only connection errors: the command cannot have run on a socket
    that was already dead."""
    return Retry(EqualJitterBackoff(cap=RETRY_CAP, base=RETRY_BASE), RETRIES, (ConnectionError,))


# Keepalive, a bounded connect time so a dead host fails fast instead of hanging, a bounded
# read, redis-py's retry, and a PING before reusing a connection idle for 15 s.
DEFAULTS: dict[str, Any] = {
    "socket_keepalive": True,
    "socket_connect_timeout": 5,
    "socket_timeout": COMMAND_TIMEOUT,
    "health_check_interval": 15,
}


def _options(options: dict[str, Any]) -> dict[str, Any]:
    return {**DEFAULTS, "retry": retry(), **options}


AnyRedis = aioredis.Redis | RedisCluster


def connect(url: str, **options: Any) -> aioredis.Redis:
    """A client for the standalone server at ``url`` with the gateway's defaults."""
    return aioredis.Redis.from_url(url, **_options(options))


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
    sentinel_options: dict[str, Any] = {**DEFAULTS, "socket_timeout": 5, "retry": retry()}
    if deployment.sentinel_password:
        sentinel_options["password"] = deployment.sentinel_password
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        list(deployment.sentinels),
        sentinel_kwargs=sentinel_options,
        **_options({**master_options, **options}),
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
    return RedisCluster.from_url(url, **_options(options))


def node(deployment: RedisDeployment, host: str, port: int, **options: Any) -> aioredis.Redis:
    """A plain client of one cluster node, with the deployment's credentials and scheme."""
    parts = urlsplit(deployment.url)
    auth = parts.netloc.rpartition("@")[0]
    netloc = f"{auth}@{host}:{port}" if auth else f"{host}:{port}"
    return connect(urlunsplit((parts.scheme, netloc, "", parts.query, "")), **options)
