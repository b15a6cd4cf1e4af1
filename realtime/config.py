"""The one place that reads the environment and ``.env``.

Every setting has the seed's name and default. A value that does not parse stops the start
with a :class:`ConfigError` naming the variable and what it accepts.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote, urlsplit

from starlette.config import Config

from realtime.errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class Option:
    """A documented setting: its variable, default and what it accepts."""

    name: str
    default: str | None
    help: str


# The one place every default is written: `realtime serve --help` prints this table and
# load_settings() falls back to it. Plugins document their own settings in their READMEs.
OPTIONS: tuple[Option, ...] = (
    Option("SERVER_ADDR", ":8080", "listen address host:port (an empty host listens on all)"),
    Option("REDIS_ADDR", "127.0.0.1:6379", "Redis host:port for presence (and the redis broker)"),
    Option("REDIS_PASSWORD", None, "Redis password"),
    Option("REDIS_DB", "0", "Redis database index, an integer >= 0"),
    Option("REDIS_URL", None, "redis:// or rediss:// URL; overrides REDIS_ADDR/PASSWORD/DB"),
    Option("REDIS_SENTINELS", None, "comma-separated sentinel host:port list (Sentinel mode)"),
    Option("REDIS_SENTINEL_MASTER", None, "master name the sentinels monitor; needs SENTINELS"),
    Option("REDIS_SENTINEL_PASSWORD", None, "password of the sentinels themselves, if any"),
    Option("REDIS_CLUSTER", "0", "1: Redis Cluster; REDIS_ADDR or REDIS_URL names a startup node"),
    Option("REDIS_CLUSTER_PUBSUB", "sharded", "sharded | classic (seed gateway interop)"),
    Option("PRESENCE_STORE", "redis", "where presence lives: redis | memory"),
    Option("PRESENCE_TTL_SECONDS", "60", "seconds a member whose gateway stopped stays listed"),
    Option("PRESENCE_MAX_META_BYTES", "2048", "largest presence meta (JSON bytes) per member"),
    Option("PRESENCE_MAX_MEMBERS", "100000", "members per channel; 0 means no cap"),
    Option("PRESENCE_DIFF_WINDOW_MS", "100", "window batching events into one presence_diff"),
    Option("BROADCAST_MQ_TYPE", "redis", "broker plugin name (entry point realtime.brokers)"),
    Option("BROADCAST_MQ_ADDR", None, "broker address; the redis broker defaults to REDIS_*"),
    Option("BROADCAST_MQ_PASSWORD", None, "broker password (redis broker)"),
    Option("BROADCAST_MQ_DB", None, "broker database index (redis broker)"),
    Option("CORS_ALLOWED_ORIGINS", "*", "comma-separated origins allowed to call /api/event"),
    Option("JWT_SECRET", None, "HS256 secret; when set, /ws requires a valid JWT"),
    Option("JWT_USER_CLAIM", "sub", "JWT claim that holds the user id"),
    Option("LOG_LEVEL", "info", "debug | info | warning | error"),
    Option("WS_PING_INTERVAL_SECONDS", "20", "seconds between WebSocket pings; 0 disables"),
    Option("WS_PING_TIMEOUT_SECONDS", "20", "seconds to wait for a pong before closing"),
    Option("WS_MAX_FRAME_BYTES", "65536", "largest client frame; larger ones close with 1009"),
    Option("WS_SEND_QUEUE_SIZE", "1024", "frames queued per connection before it closes 4008"),
    # 16 MiB: more than the presence_sync of a full 100,000-member channel (about 13 MB with
    # ~90-byte metas) and 16 times what the frame bound lets through at 1 KB a frame, so a
    # client that reads never meets it; one that stops reading is closed holding at most this.
    Option("WS_SEND_QUEUE_BYTES", "16777216", "bytes waiting per connection before it closes 4008"),
)

_DEFAULTS = {option.name: option.default for option in OPTIONS}
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
PUBSUB_MODES = ("sharded", "classic")


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
            return f"cluster {_hide_password(self.url)} pubsub={self.cluster_pubsub}"
        return _hide_password(self.url)


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Parsed settings, built only by :func:`load_settings` (defaults live in ``OPTIONS``);
    ``env`` keeps every raw variable so plugins can read their own."""

    host: str
    port: int
    redis: RedisDeployment
    presence_store: str
    presence_ttl: int
    presence_max_meta_bytes: int
    presence_max_members: int
    presence_diff_window_ms: int
    broker: str
    cors_origins: tuple[str, ...]
    jwt_secret: str | None = field(repr=False)
    jwt_user_claim: str
    log_level: str
    ws_ping_interval: float | None
    ws_ping_timeout: float | None
    ws_max_frame_bytes: int
    ws_send_queue_size: int
    ws_send_queue_bytes: int
    env: Mapping[str, str] = field(repr=False)

    def get(self, name: str, default: str | None = None) -> str | None:
        """A raw variable (process environment over ``.env``), for plugins' own settings."""
        value = self.env.get(name)
        return default if value in (None, "") else value


class _Env:
    """The merged environment, read through ``OPTIONS``: ``given`` is what the user set,
    ``value`` falls back to the option's default."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def given(self, name: str) -> str | None:
        value = self._env.get(name)
        if value is None or value.strip() == "":
            return None
        return value.strip()

    def value(self, name: str) -> str:
        value = self.given(name) or _DEFAULTS[name]
        assert value is not None, f"{name} has no default in OPTIONS"
        return value


def load_settings(
    environ: Mapping[str, str] | None = None, env_file: str | Path | None = ".env"
) -> Settings:
    """Read settings from ``environ`` (default: the process) over ``env_file``."""
    merged = _merged_env(os.environ if environ is None else environ, env_file)
    env = _Env(merged)
    host, port = _parse_addr("SERVER_ADDR", env.value("SERVER_ADDR"))
    presence_store = _choice("PRESENCE_STORE", env.value("PRESENCE_STORE"), ("redis", "memory"))
    ping_interval = _parse(env, "WS_PING_INTERVAL_SECONDS", float, "a number of seconds >= 0")
    ping_timeout = _parse(env, "WS_PING_TIMEOUT_SECONDS", float, "a number of seconds >= 0")
    origins = tuple(o.strip() for o in env.value("CORS_ALLOWED_ORIGINS").split(",") if o.strip())
    broker = env.value("BROADCAST_MQ_TYPE").lower()
    return Settings(
        host=host,
        port=port,
        redis=_redis_deployment(env, broker),
        presence_store=presence_store,
        presence_ttl=_parse(env, "PRESENCE_TTL_SECONDS", int, "a whole number of seconds >= 1", 1),
        presence_max_meta_bytes=_parse(env, "PRESENCE_MAX_META_BYTES", int, "a byte count >= 2", 2),
        presence_max_members=_parse(env, "PRESENCE_MAX_MEMBERS", int, "a member count >= 0"),
        presence_diff_window_ms=_parse(
            env, "PRESENCE_DIFF_WINDOW_MS", int, "a whole number of milliseconds >= 0"
        ),
        broker=broker,
        cors_origins=origins,
        jwt_secret=env.given("JWT_SECRET"),
        jwt_user_claim=env.value("JWT_USER_CLAIM"),
        log_level=_choice("LOG_LEVEL", env.value("LOG_LEVEL").lower(), LOG_LEVELS),
        ws_ping_interval=ping_interval or None,
        ws_ping_timeout=ping_timeout or None,
        ws_max_frame_bytes=_parse(env, "WS_MAX_FRAME_BYTES", int, "a byte count >= 256", 256),
        ws_send_queue_size=_parse(env, "WS_SEND_QUEUE_SIZE", int, "a frame count >= 1", 1),
        ws_send_queue_bytes=_parse(env, "WS_SEND_QUEUE_BYTES", int, "a byte count >= 65536", 65536),
        env=merged,
    )


def _merged_env(environ: Mapping[str, str], env_file: str | Path | None) -> dict[str, str]:
    # Starlette's Config reads the .env file; the process environment wins over it.
    merged: dict[str, str] = {}
    if env_file is not None and Path(env_file).is_file():
        merged.update(Config(env_file, environ={}).file_values)
    merged.update(environ)
    return merged


def _parse(
    env: _Env,
    name: str,
    cast: Callable[[str], T],
    accepts: str,
    minimum: float = 0,
) -> T:
    text = env.value(name)
    try:
        value = cast(text)
    except ValueError:
        raise ConfigError(name, f"{text!r} is not {accepts}") from None
    if value < minimum:  # type: ignore[operator]
        raise ConfigError(name, f"{text!r} is not {accepts}")
    return value


def _choice(name: str, value: str | None, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ConfigError(name, f"{value!r} is not one of {' | '.join(allowed)}")
    return value


def _parse_addr(name: str, value: str) -> tuple[str, int]:
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(name, f"{value!r} is not host:port (for example :8080 or 127.0.0.1:8080)")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port_text)


def _redis_url(env: _Env) -> str:
    url = env.given("REDIS_URL")
    if url is not None:
        return check_redis_url("REDIS_URL", url)
    return redis_url_from_parts(
        "REDIS", env.value("REDIS_ADDR"), env.given("REDIS_PASSWORD"), env.value("REDIS_DB")
    )


def _redis_deployment(env: _Env, broker: str) -> RedisDeployment:
    cluster = _flag("REDIS_CLUSTER", env.value("REDIS_CLUSTER"))
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
    _choice("REDIS_CLUSTER_PUBSUB", pubsub, PUBSUB_MODES)
    if sentinels_text is None:
        for name, value in (("REDIS_SENTINEL_MASTER", master), ("REDIS_SENTINEL_PASSWORD",
                            sentinel_password)):  # fmt: skip
            if value is not None:
                raise ConfigError(name, "needs REDIS_SENTINELS (the sentinels' host:port list)")
        url = _redis_url(env)
        if cluster and urlsplit(url).path.strip("/") not in ("", "0"):
            name = "REDIS_URL" if env.given("REDIS_URL") is not None else "REDIS_DB"
            raise ConfigError(name, "Redis Cluster has only database 0")
        return RedisDeployment(url, cluster=cluster, cluster_pubsub=pubsub)
    if cluster:
        raise ConfigError("REDIS_CLUSTER", "cannot be combined with REDIS_SENTINELS")
    if master is None:
        raise ConfigError("REDIS_SENTINEL_MASTER", "is required with REDIS_SENTINELS")
    for name in ("REDIS_URL", "REDIS_ADDR"):
        if env.given(name) not in (None, _DEFAULTS[name]):
            raise ConfigError(
                name, "with REDIS_SENTINELS the master's address comes from the sentinels"
            )
    sentinels = tuple(
        _dialable(_parse_addr("REDIS_SENTINELS", item.strip()))
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


def _dialable(addr: tuple[str, int]) -> tuple[str, int]:
    return ("127.0.0.1" if addr[0] == "0.0.0.0" else addr[0], addr[1])


def _flag(name: str, value: str) -> bool:
    text = value.lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigError(name, f"{value!r} is not 1 or 0")


def check_redis_url(name: str, url: str) -> str:
    """Reject a Redis URL that redis-py would misread, naming the variable."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix") or not (parts.hostname or parts.path):
        raise ConfigError(name, f"{_hide_password(url)!r} is not a redis://, rediss:// URL")
    return url


def redis_url_from_parts(prefix: str, addr: str, password: str | None, db: str | None) -> str:
    """Build a redis:// URL from the seed's ADDR/PASSWORD/DB triple."""
    host, port = _parse_addr(f"{prefix}_ADDR", addr)
    if host == "0.0.0.0":
        host = "127.0.0.1"
    db_text = db or "0"
    if not db_text.isdigit():
        raise ConfigError(f"{prefix}_DB", f"{db_text!r} is not a database index >= 0")
    auth = f":{quote(password, safe='')}@" if password else ""
    return f"redis://{auth}{host}:{port}/{int(db_text)}"


def _hide_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@", 1)
    return url


def describe(settings: Settings) -> str:
    """The first log line: where the gateway listens and on which backends it runs."""
    text = f"broker={settings.broker} presence={settings.presence_store}"
    if "redis" in (settings.broker, settings.presence_store):
        text += f" redis={settings.redis.display}"
    if settings.broker == "memory" and settings.presence_store == "memory":
        text += " (embedded: in-process backends, one instance, no Redis needed)"
    return text
