"""The one place that reads the environment and ``.env``.

Every setting has the seed's name and default. A value that does not parse stops the start
with a :class:`ConfigError` naming the variable and what it accepts.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

from starlette.config import Config

from realtime.apikeys import ApiKey, parse_api_keys
from realtime.auth import keys
from realtime.brokers.base import EDGE_MAX_BYTES, ENVELOPE_RESERVE, MAX_MESSAGE_BYTES
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
    Option(
        "PRESENCE_ORDER_WAIT_MS",
        "100",
        "how long an event ahead of a missing one waits for it before a resync (0..1000)",
    ),
    Option("BROADCAST_MQ_TYPE", "redis", "broker plugin name (entry point realtime.brokers)"),
    Option("BROADCAST_MQ_ADDR", None, "broker address; the redis broker defaults to REDIS_*"),
    Option("BROADCAST_MQ_PASSWORD", None, "broker password (redis broker)"),
    Option("BROADCAST_MQ_DB", None, "broker database index (redis broker)"),
    Option("CORS_ALLOWED_ORIGINS", "*", "comma-separated origins allowed to call /api/event"),
    Option("API_KEYS", None, "keys for /api/event: key[:pattern|pattern],...; unset: open API"),
    Option("WS_ALLOWED_ORIGINS", None, "origins allowed to open /ws (default: the CORS list)"),
    Option(
        "HTTP_REQUIRE_JSON",
        "1",
        "1: /api/event takes application/json only (415 otherwise); 0: any type, as the seed",
    ),
    Option("JWT_SECRET", None, "HMAC secret (>= 32 bytes); when set, /ws requires a JWT"),
    Option("JWT_PUBLIC_KEY", None, "PEM public key (RSA, EC, Ed25519) or its path, instead"),
    Option("JWT_JWKS_URL", None, "URL of a JWKS whose keys (by kid) verify tokens, instead"),
    Option("JWT_JWKS_CACHE_SECONDS", "300", "seconds the JWKS is cached"),
    Option("JWT_JWKS_MIN_REFRESH_SECONDS", "30", "least seconds between JWKS refetches"),
    Option("JWT_AUDIENCE", None, "required aud: a token must name one of these (comma list)"),
    Option("JWT_ISSUER", None, "required iss"),
    Option("JWT_REQUIRE_EXP", "1", "1: tokens must have exp; 0: the seed's behaviour"),
    Option("JWT_EXPIRY_GRACE_SECONDS", "10", "after token_expired, seconds to refresh or 4001"),
    Option("JWT_USER_CLAIM", "sub", "JWT claim that holds the user id"),
    Option("CHANNEL_POLICY", None, "open | token (default: token with a JWT key, else open)"),
    Option("AUTH_HOOK_URL", None, "app backend asked on subscribe/publish/presence join"),
    Option("AUTH_HOOK_TIMEOUT_SECONDS", "2", "seconds to wait for the hook's answer"),
    Option("AUTH_HOOK_CACHE_SECONDS", "30", "seconds a hook answer is reused; 0: never"),
    Option("AUTH_HOOK_FAILURE", "closed", "closed (refuse) | open (allow) when the hook fails"),
    Option("LOG_LEVEL", "info", "debug | info | warning | error"),
    Option("WS_PING_INTERVAL_SECONDS", "20", "seconds between WebSocket pings; 0 disables"),
    Option("WS_PING_TIMEOUT_SECONDS", "20", "seconds to wait for a pong before closing"),
    Option(
        "WS_MAX_FRAME_BYTES",
        "65536",
        "largest client frame, at most BROADCAST_MAX_MESSAGE_BYTES less 1 KiB; larger ones close"
        " with 1009",
    ),
    Option(
        "BROADCAST_MAX_MESSAGE_BYTES",
        str(MAX_MESSAGE_BYTES),
        "largest message handed to the broker; raise it only for an MQ that carries more "
        "(Redis: 512 MB); the edges' caps may then go up to it less 1 KiB",
    ),
    # Unset, it follows BROADCAST_MAX_MESSAGE_BYTES less the bus envelope's room, so raising
    # that one setting is enough to take the seed's large bodies again.
    Option(
        "HTTP_MAX_BODY_BYTES",
        None,
        f"largest /api/event body (default {EDGE_MAX_BYTES}: BROADCAST_MAX_MESSAGE_BYTES less"
        " 1 KiB, also its ceiling); larger ones get 413",
    ),
    Option(
        "START_TIMEOUT_SECONDS",
        "30",
        "bound on each broker's and the presence store's start; past it the gateway exits",
    ),
    Option("WS_SEND_QUEUE_SIZE", "1024", "frames queued per connection before it closes 4008"),
    # 16 MiB: more than the presence_sync of a full 100,000-member channel (about 13 MB with
    # ~90-byte metas) and 16 times what the frame bound lets through at 1 KB a frame, so a
    # client that reads never meets it; one that stops reading is closed holding at most this.
    Option("WS_SEND_QUEUE_BYTES", "16777216", "bytes waiting per connection before it closes 4008"),
    Option("WS_MAX_FRAMES_PER_SECOND", "100", "client frames a second per connection; 0: no cap"),
    Option("WS_FRAME_BURST", "200", "client frames a connection may send at once above the rate"),
    Option("WS_MAX_SUBSCRIPTIONS", "1000", "channels one connection may subscribe; 0: no cap"),
    Option("WS_MAX_PRESENCE_JOINS", "100", "channels one connection may be present in; 0: none"),
    Option("WS_MAX_CONNECTIONS_PER_USER", "100", "connections of one user per instance; 0: none"),
    Option("WS_MAX_CONNECTIONS", "10000", "WebSocket connections per instance; 0: no cap"),
    Option("PRESENCE_RESYNC_INTERVAL_MS", "1000", "least ms between two syncs of a channel"),
    Option("EVENT_NAME_MAX_LENGTH", "200", "longest event name (characters), WebSocket and HTTP"),
    Option("JSON_MAX_DEPTH", "64", "deepest JSON nesting accepted in a frame or HTTP body"),
    Option("HANDSHAKE_TIMEOUT_SECONDS", "10", "seconds a client has to send its request headers"),
    Option("HTTP_MAX_REQUEST_LINE_BYTES", "8190", "longest request line; longer: 414"),
    Option("HTTP_MAX_HEADER_BYTES", "16384", "largest request header block; larger: 431"),
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
    presence_order_wait_ms: int
    broker: str
    cors_origins: tuple[str, ...]
    api_keys: tuple[ApiKey, ...] = field(repr=False)
    ws_allowed_origins: tuple[str, ...]
    http_require_json: bool
    jwt_secret: str | None = field(repr=False)
    jwt_public_key: str | None = field(repr=False)
    jwt_jwks_url: str | None
    jwt_algorithms: tuple[str, ...]
    jwt_jwks_cache_seconds: float
    jwt_jwks_min_refresh_seconds: float
    jwt_audience: tuple[str, ...]
    jwt_issuer: str | None
    jwt_require_exp: bool
    jwt_expiry_grace: float
    jwt_user_claim: str
    channel_policy: str
    auth_hook_url: str | None
    auth_hook_timeout: float
    auth_hook_cache_seconds: float
    auth_hook_fail_open: bool
    log_level: str
    ws_ping_interval: float | None
    ws_ping_timeout: float | None
    ws_max_frame_bytes: int
    ws_send_queue_size: int
    ws_send_queue_bytes: int
    broker_max_message_bytes: int
    http_max_body_bytes: int
    start_timeout: float
    ws_max_frames_per_second: float
    ws_frame_burst: int
    ws_max_subscriptions: int
    ws_max_presence_joins: int
    ws_max_connections_per_user: int
    ws_max_connections: int
    presence_resync_interval: float
    event_name_max_length: int
    json_max_depth: int
    handshake_timeout: float
    http_max_request_line: int
    http_max_header_bytes: int
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
    origins = _list(env.value("CORS_ALLOWED_ORIGINS"))
    ws_origins_text = env.given("WS_ALLOWED_ORIGINS")
    ws_origins = origins if ws_origins_text is None else _list(ws_origins_text)
    broker = env.value("BROADCAST_MQ_TYPE").lower()
    message_max = _parse(
        env,
        "BROADCAST_MAX_MESSAGE_BYTES",
        int,
        f"a byte count of at least {MAX_MESSAGE_BYTES} (1 MiB, what every broker carries)",
        MAX_MESSAGE_BYTES,
    )
    edge = message_max - ENVELOPE_RESERVE
    return Settings(
        host=host,
        port=port,
        redis=_redis_deployment(env, broker),
        presence_store=presence_store,
        presence_ttl=_parse(env, "PRESENCE_TTL_SECONDS", int, "a whole number of seconds >= 1", 1),
        presence_max_meta_bytes=_parse(
            env,
            "PRESENCE_MAX_META_BYTES",
            int,
            f"a byte count from 2 to {edge}",
            2,
            edge,
        ),
        presence_max_members=_parse(env, "PRESENCE_MAX_MEMBERS", int, "a member count >= 0"),
        presence_diff_window_ms=_parse(
            env, "PRESENCE_DIFF_WINDOW_MS", int, "a whole number of milliseconds >= 0"
        ),
        presence_order_wait_ms=_parse(
            env, "PRESENCE_ORDER_WAIT_MS", int, "a whole number of milliseconds, 0 to 1000", 0, 1000
        ),
        broker=broker,
        cors_origins=origins,
        api_keys=parse_api_keys("API_KEYS", env.given("API_KEYS")),
        ws_allowed_origins=ws_origins,
        http_require_json=_flag("HTTP_REQUIRE_JSON", env.value("HTTP_REQUIRE_JSON")),
        **_token_settings(env),
        jwt_user_claim=env.value("JWT_USER_CLAIM"),
        **_access_settings(env),
        log_level=_choice("LOG_LEVEL", env.value("LOG_LEVEL").lower(), LOG_LEVELS),
        ws_ping_interval=ping_interval or None,
        ws_ping_timeout=ping_timeout or None,
        ws_max_frame_bytes=_parse(
            env,
            "WS_MAX_FRAME_BYTES",
            int,
            f"a byte count from 256 to {edge}",
            256,
            edge,
        ),
        ws_send_queue_size=_parse(env, "WS_SEND_QUEUE_SIZE", int, "a frame count >= 1", 1),
        ws_send_queue_bytes=_parse(env, "WS_SEND_QUEUE_BYTES", int, "a byte count >= 65536", 65536),
        broker_max_message_bytes=message_max,
        http_max_body_bytes=_parse(
            env,
            "HTTP_MAX_BODY_BYTES",
            int,
            f"a byte count from 64 to {edge}",
            64,
            edge,
            default=str(edge),
        ),
        start_timeout=_parse(
            env,
            "START_TIMEOUT_SECONDS",
            float,
            "a number of seconds from 0.001 to 86400",
            0.001,
            86400,
        ),
        ws_max_frames_per_second=_parse(
            env, "WS_MAX_FRAMES_PER_SECOND", float, "a number of frames >= 0"
        ),
        ws_frame_burst=_parse(env, "WS_FRAME_BURST", int, "a frame count >= 1", 1),
        ws_max_subscriptions=_parse(env, "WS_MAX_SUBSCRIPTIONS", int, "a channel count >= 0"),
        ws_max_presence_joins=_parse(env, "WS_MAX_PRESENCE_JOINS", int, "a channel count >= 0"),
        ws_max_connections_per_user=_parse(
            env, "WS_MAX_CONNECTIONS_PER_USER", int, "a connection count >= 0"
        ),
        ws_max_connections=_parse(env, "WS_MAX_CONNECTIONS", int, "a connection count >= 0"),
        presence_resync_interval=_parse(
            env, "PRESENCE_RESYNC_INTERVAL_MS", int, "a whole number of milliseconds >= 0"
        )
        / 1000,
        event_name_max_length=_parse(env, "EVENT_NAME_MAX_LENGTH", int, "a length >= 1", 1),
        # msgspec recurses once per level; far below Python's recursion limit, with room.
        json_max_depth=_bounded(env, "JSON_MAX_DEPTH", 1, 500),
        handshake_timeout=_parse(
            env, "HANDSHAKE_TIMEOUT_SECONDS", float, "a number of seconds > 0", 0.001
        ),
        # 8190: the longest line websockets' handshake parser reads (8192 with CRLF).
        http_max_request_line=_bounded(env, "HTTP_MAX_REQUEST_LINE_BYTES", 256, 8190),
        http_max_header_bytes=_parse(
            env, "HTTP_MAX_HEADER_BYTES", int, "a byte count >= 1024", 1024
        ),
        env=merged,
    )


def _token_settings(env: _Env) -> dict[str, Any]:
    secret, public_key, jwks_url = (
        env.given(name) for name in ("JWT_SECRET", "JWT_PUBLIC_KEY", "JWT_JWKS_URL")
    )
    given = [n for n, v in (("JWT_SECRET", secret), ("JWT_PUBLIC_KEY", public_key),
             ("JWT_JWKS_URL", jwks_url)) if v is not None]  # fmt: skip
    if len(given) > 1:
        raise ConfigError(given[1], "set only one of JWT_SECRET, JWT_PUBLIC_KEY, JWT_JWKS_URL")
    algorithms: tuple[str, ...] = ()
    try:
        if secret is not None:
            algorithms = keys.hmac_algorithms(secret)
        elif public_key is not None:
            public_key = keys.public_key_pem(public_key)
            algorithms = keys.public_key_algorithms(public_key)
    except ValueError as exc:
        raise ConfigError(given[0], str(exc)) from None
    if jwks_url is not None and urlsplit(jwks_url).scheme not in ("http", "https"):
        raise ConfigError("JWT_JWKS_URL", f"{jwks_url!r} is not an http(s) URL")
    if not given:
        for name in ("JWT_AUDIENCE", "JWT_ISSUER"):
            if env.given(name) is not None:
                raise ConfigError(name, "needs JWT_SECRET, JWT_PUBLIC_KEY or JWT_JWKS_URL")
    audience = env.given("JWT_AUDIENCE") or ""
    return {
        "jwt_secret": secret,
        "jwt_public_key": public_key,
        "jwt_jwks_url": jwks_url,
        "jwt_algorithms": algorithms,
        "jwt_jwks_cache_seconds": _parse(
            env, "JWT_JWKS_CACHE_SECONDS", float, "a number of seconds > 0", 0.001
        ),
        "jwt_jwks_min_refresh_seconds": _parse(
            env, "JWT_JWKS_MIN_REFRESH_SECONDS", float, "a number of seconds >= 0"
        ),
        "jwt_audience": tuple(a.strip() for a in audience.split(",") if a.strip()),
        "jwt_issuer": env.given("JWT_ISSUER"),
        "jwt_require_exp": _flag("JWT_REQUIRE_EXP", env.value("JWT_REQUIRE_EXP")),
        "jwt_expiry_grace": _parse(
            env, "JWT_EXPIRY_GRACE_SECONDS", float, "a number of seconds >= 0"
        ),
    }


def _access_settings(env: _Env) -> dict[str, Any]:
    tokens = any(env.given(n) for n in ("JWT_SECRET", "JWT_PUBLIC_KEY", "JWT_JWKS_URL"))
    hook = env.given("AUTH_HOOK_URL")
    given_policy = env.given("CHANNEL_POLICY")
    # Safe by default: with tokens, only what they grant. Without a JWT key identities are
    # not verified (any ?user_id=), so a policy could only refuse everything: open.
    policy = (given_policy or ("token" if tokens else "open")).lower()
    _choice("CHANNEL_POLICY", policy, ("open", "token"))
    if policy == "token" and not tokens and hook is None:
        raise ConfigError(
            "CHANNEL_POLICY",
            "token needs JWT_SECRET, JWT_PUBLIC_KEY or JWT_JWKS_URL (or AUTH_HOOK_URL): "
            "without them nothing could be granted",
        )
    if hook is not None and urlsplit(hook).scheme not in ("http", "https"):
        raise ConfigError("AUTH_HOOK_URL", f"{_hide_password(hook)!r} is not an http(s) URL")
    failure = _choice("AUTH_HOOK_FAILURE", env.value("AUTH_HOOK_FAILURE").lower(),
                      ("closed", "open"))  # fmt: skip
    return {
        "channel_policy": policy,
        "auth_hook_url": hook,
        "auth_hook_timeout": _parse(
            env, "AUTH_HOOK_TIMEOUT_SECONDS", float, "a number of seconds > 0", 0.001
        ),
        "auth_hook_cache_seconds": _parse(
            env, "AUTH_HOOK_CACHE_SECONDS", float, "a number of seconds >= 0"
        ),
        "auth_hook_fail_open": failure == "open",
    }


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
    maximum: float = math.inf,
    default: str | None = None,
) -> T:
    """``default`` is for the rare option whose default follows another setting."""
    text = env.given(name) or default or env.value(name)
    try:
        value = cast(text)
    except ValueError:
        raise ConfigError(name, f"{text!r} is not {accepts}") from None
    # `not minimum <= value` also refuses NaN.
    if not minimum <= value <= maximum:  # type: ignore[operator]
        raise ConfigError(name, f"{text!r} is not {accepts}")
    return value


def _bounded(env: _Env, name: str, low: int, high: int) -> int:
    value = _parse(env, name, int, f"a whole number from {low} to {high}", low)
    if value > high:
        raise ConfigError(name, f"{value} is not a whole number from {low} to {high}")
    return value


def _list(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


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
