"""Which Redis the gateway talks to: standalone, Sentinel or Cluster, from ``REDIS_*`` (and the
seed's ``BROADCAST_MQ_*`` address triple, for the redis broker)."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

from realtime.config.options import DEFAULTS, PUBSUB_MODES
from realtime.config.reading import Env, choice, flag, hide_password, parse_addr
from realtime.errors import ConfigError


@dataclass(frozen=True)
class RedisDeployment:
    """Which Redis the gateway talks to and how: standalone, Sentinel or Cluster.

    ``url`` is the server (standalone), the node a cluster client starts from (Cluster), or
    only the master's password, database and scheme (Sentinel: the master's address comes from
    the sentinels).
    """

    url: str
    sentinels: tuple[tuple[str, int], ...] = ()
    sentinel_master: str | None = None
    sentinel_password: str | None = field(default=None, repr=False)
    cluster: bool = False
    # Cluster only: "sharded" (SPUBLISH/SSUBSCRIBE) or "classic" (PUBLISH/SUBSCRIBE).
    cluster_pubsub: str = "sharded"

    @property
    def mode(self) -> str:
        if self.sentinels:
            return "sentinel"
        return "cluster" if self.cluster else "standalone"

    @property
    def display(self) -> str:
        """Where it points, without passwords, for logs."""
        if self.sentinels:
            hosts = ",".join(f"{host}:{port}" for host, port in self.sentinels)
            return f"sentinel://{hosts}/{self.sentinel_master} db={urlsplit(self.url).path[1:]}"
        if self.cluster:
            return f"cluster {hide_password(self.url)} pubsub={self.cluster_pubsub}"
        return hide_password(self.url)


def redis_url(env: Env) -> str:
    url = env.given("REDIS_URL")
    if url is not None:
        return check_redis_url("REDIS_URL", url)
    return redis_url_from_parts(
        "REDIS", env.value("REDIS_ADDR"), env.given("REDIS_PASSWORD"), env.value("REDIS_DB")
    )


def redis_deployment(env: Env, broker: str) -> RedisDeployment:
    cluster = flag("REDIS_CLUSTER", env.value("REDIS_CLUSTER"))
    sentinels_text = env.given("REDIS_SENTINELS")
    master = env.given("REDIS_SENTINEL_MASTER")
    sentinel_password = env.given("REDIS_SENTINEL_PASSWORD")
    if broker == "redis" and (cluster or sentinels_text):
        # One deployment carries presence and broadcasts; a second Redis address for the
        # broker would be a standalone server beside the HA one, which is never what is meant.
        for name in ("BROADCAST_MQ_ADDR", "BROADCAST_MQ_PASSWORD", "BROADCAST_MQ_DB"):
            if env.given(name) is not None:
                mode = "REDIS_CLUSTER" if cluster else "REDIS_SENTINELS"
                raise ConfigError(
                    name, f"the redis broker uses the {mode} deployment; unset {name}"
                )
    if env.given("REDIS_CLUSTER_PUBSUB") is not None and not cluster:
        raise ConfigError("REDIS_CLUSTER_PUBSUB", "only applies with REDIS_CLUSTER=1")
    pubsub = env.value("REDIS_CLUSTER_PUBSUB").lower()
    choice("REDIS_CLUSTER_PUBSUB", pubsub, PUBSUB_MODES)
    if sentinels_text is None:
        for name, value in (("REDIS_SENTINEL_MASTER", master), ("REDIS_SENTINEL_PASSWORD",
                            sentinel_password)):  # fmt: skip
            if value is not None:
                raise ConfigError(name, "needs REDIS_SENTINELS (the sentinels' host:port list)")
        url = redis_url(env)
        if cluster and urlsplit(url).path.strip("/") not in ("", "0"):
            name = "REDIS_URL" if env.given("REDIS_URL") is not None else "REDIS_DB"
            raise ConfigError(name, "Redis Cluster has only database 0")
        return RedisDeployment(url, cluster=cluster, cluster_pubsub=pubsub)
    if cluster:
        raise ConfigError("REDIS_CLUSTER", "cannot be combined with REDIS_SENTINELS")
    if master is None:
        raise ConfigError("REDIS_SENTINEL_MASTER", "is required with REDIS_SENTINELS")
    for name in ("REDIS_URL", "REDIS_ADDR"):
        if env.given(name) not in (None, DEFAULTS[name]):
            raise ConfigError(
                name, "with REDIS_SENTINELS the master's address comes from the sentinels"
            )
    sentinels = tuple(
        dialable(parse_addr("REDIS_SENTINELS", item.strip()))
        for item in sentinels_text.split(",")
        if item.strip()
    )
    if not sentinels:
        raise ConfigError("REDIS_SENTINELS", f"{sentinels_text!r} names no host:port")
    # Keeps the master's password and database; the host is a placeholder never dialled.
    url = redis_url_from_parts(
        "REDIS", "127.0.0.1:6379", env.given("REDIS_PASSWORD"), env.value("REDIS_DB")
    )
    return RedisDeployment(url, sentinels, master, sentinel_password)


def dialable(addr: tuple[str, int]) -> tuple[str, int]:
    return ("127.0.0.1" if addr[0] == "0.0.0.0" else addr[0], addr[1])


def check_redis_url(name: str, url: str) -> str:
    """Reject a Redis URL that redis-py would misread, naming the variable."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix") or not (parts.hostname or parts.path):
        raise ConfigError(name, f"{hide_password(url)!r} is not a redis://, rediss:// URL")
    return url


def redis_url_from_parts(prefix: str, addr: str, password: str | None, db: str | None) -> str:
    """Build a redis:// URL from the seed's ADDR/PASSWORD/DB triple."""
    host, port = parse_addr(f"{prefix}_ADDR", addr)
    if host == "0.0.0.0":
        host = "127.0.0.1"
    db_text = db or "0"
    if not db_text.isdigit():
        raise ConfigError(f"{prefix}_DB", f"{db_text!r} is not a database index >= 0")
    auth = f":{quote(password, safe='')}@" if password else ""
    return f"redis://{auth}{host}:{port}/{int(db_text)}"
