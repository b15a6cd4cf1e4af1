"""Real servers for integration tests: the plumbing every launcher shares, and Redis.

Each launcher resolves its server in this order:

1. an environment variable (``REDIS_URL``, ``REDIS_SENTINELS`` + ``REDIS_SENTINEL_MASTER``,
   ``REDIS_CLUSTER_NODES``): the server is used as it is, and
   ``stop()``/``start()``/``restart()``/``kill()`` raise ``RestartUnsupported``;
2. a container through testcontainers, when a Docker engine answers;
3. the real server binary started natively on free ports of 127.0.0.1 in a temporary directory.

``REALTIME_SERVICES_BACKEND=native`` or ``=docker`` skips the Docker probe and forces one of
the last two. Everything started here is stopped at interpreter exit, even after a failing
test, and its temporary directory is removed.

The Kafka and RabbitMQ launchers live in their plugins (``realtime_kafka.testing``,
``realtime_rabbitmq.testing``) and are built on :class:`Service` the same way.
:func:`native_server` runs any other server binary natively on a free port with that same
plumbing, in one call: the start of a plugin's own launcher.

Modules: ``processes`` (a native process group, a container, the errors), ``base`` (where a
server comes from, the :class:`Service` handle, cleanup at exit), ``native`` (any binary on
a free port: :func:`native_server`), ``redis`` (the launchers of
standalone Redis, Sentinel and Cluster, probed with redis-py), ``nginx`` (Debian's nginx in
front of gateways, for the load-balancer drill: :func:`nginx_server`). Import from this package.

A typical module-scoped fixture::

    @pytest.fixture(scope="module")
    def redis() -> Iterator[RedisServer]:
        with redis_server() as server:
            yield server

and a test that needs to restart the server::

    try:
        redis.restart()
    except RestartUnsupported as exc:
        pytest.skip(str(exc))
"""

from __future__ import annotations

from realtime.testing.services.base import (
    START_TIMEOUT,
    Address,
    Origin,
    Service,
    backend,
    cache_dir,
    parse_hostport,
    run_sync,
    which,
)
from realtime.testing.services.native import NativeServer, native_server
from realtime.testing.services.nginx import NginxServer, nginx_binary, nginx_server
from realtime.testing.services.processes import (
    STOP_TIMEOUT,
    Container,
    Process,
    RestartUnsupported,
    ServiceError,
)
from realtime.testing.services.redis import (
    RedisClusterSetup,
    RedisSentinelSetup,
    RedisServer,
    native_redis,
    redis_client,
    redis_cluster,
    redis_pings,
    redis_sentinel_setup,
    redis_server,
)
from realtime.testing.waiting import LOCALHOST

__all__ = [
    "LOCALHOST",
    "START_TIMEOUT",
    "STOP_TIMEOUT",
    "Address",
    "Container",
    "NativeServer",
    "NginxServer",
    "Origin",
    "Process",
    "RedisClusterSetup",
    "RedisSentinelSetup",
    "RedisServer",
    "RestartUnsupported",
    "Service",
    "ServiceError",
    "backend",
    "cache_dir",
    "native_redis",
    "native_server",
    "nginx_binary",
    "nginx_server",
    "parse_hostport",
    "redis_client",
    "redis_cluster",
    "redis_pings",
    "redis_sentinel_setup",
    "redis_server",
    "run_sync",
    "which",
]
