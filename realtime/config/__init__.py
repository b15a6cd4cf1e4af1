"""The one place that reads the environment and ``.env``.

Every setting has the seed's name and default (:mod:`.options`). A value that does not parse
stops the start with a :class:`ConfigError` naming the variable and what it accepts.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from realtime.apikeys import ApiKey, parse_api_keys
from realtime.brokers.base import ENVELOPE_RESERVE, MAX_MESSAGE_BYTES
from realtime.config.access import access_settings, token_settings
from realtime.config.options import LOG_FORMATS, LOG_LEVELS, METRICS_MODES, OPTIONS, Option
from realtime.config.reading import (
    Env,
    bounded,
    choice,
    flag,
    merged_env,
    parse,
    parse_addr,
    split_list,
)
from realtime.config.redis import (
    RedisDeployment,
    check_redis_url,
    redis_deployment,
    redis_url_from_parts,
)
from realtime.config.webhooks import webhook_settings
from realtime.errors import ConfigError
from realtime.history.channels import parse_history_channels

__all__ = [
    "OPTIONS",
    "Option",
    "RedisDeployment",
    "Settings",
    "check_redis_url",
    "describe",
    "load_settings",
    "playground_off_by",
    "redis_url_from_parts",
]


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
    presence_leave_grace: float
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
    log_format: str
    metrics: str
    playground: bool
    ws_ping_interval: float | None
    ws_ping_timeout: float | None
    ws_max_frame_bytes: int
    ws_send_queue_size: int
    ws_send_queue_bytes: int
    broker_max_message_bytes: int
    http_max_body_bytes: int
    start_timeout: float
    probe_interval: float
    probe_timeout: float
    server_api_timeout: float
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
    shutdown_drain_seconds: float
    # uvicorn's forwarded_allow_ips: "*", or addresses and networks; empty: trust no one.
    trusted_proxies: tuple[str, ...]
    http_access_log: bool
    ws_max_connection_age: float | None
    history_channels: tuple[str, ...]
    history_size: int
    history_ttl: int
    webhook_url: str | None
    webhook_secret: str | None = field(repr=False)
    webhook_events: tuple[str, ...]
    webhook_timeout: float
    webhook_queue_size: int
    webhook_claim_seconds: float
    idempotency_window: int
    env: Mapping[str, str] = field(repr=False)

    def get(self, name: str, default: str | None = None) -> str | None:
        """A raw variable (process environment over ``.env``), for plugins' own settings."""
        value = self.env.get(name)
        return default if value in (None, "") else value


def load_settings(
    environ: Mapping[str, str] | None = None, env_file: str | Path | None = ".env"
) -> Settings:
    """Read settings from ``environ`` (default: the process) over ``env_file``."""
    merged = merged_env(os.environ if environ is None else environ, env_file)
    env = Env(merged)
    host, port = parse_addr("SERVER_ADDR", env.value("SERVER_ADDR"))
    presence_store = choice("PRESENCE_STORE", env.value("PRESENCE_STORE"), ("redis", "memory"))
    ping_interval = parse(env, "WS_PING_INTERVAL_SECONDS", float, "a number of seconds >= 0")
    ping_timeout = parse(env, "WS_PING_TIMEOUT_SECONDS", float, "a number of seconds >= 0")
    origins = split_list(env.value("CORS_ALLOWED_ORIGINS"))
    ws_origins_text = env.given("WS_ALLOWED_ORIGINS")
    ws_origins = origins if ws_origins_text is None else split_list(ws_origins_text)
    broker = env.value("BROADCAST_MQ_TYPE").lower()
    message_max = parse(
        env,
        "BROADCAST_MAX_MESSAGE_BYTES",
        int,
        f"a byte count of at least {MAX_MESSAGE_BYTES} (1 MiB, what every broker carries)",
        MAX_MESSAGE_BYTES,
    )
    edge = message_max - ENVELOPE_RESERVE
    redis = redis_deployment(env, broker)
    return Settings(
        host=host,
        port=port,
        redis=redis,
        presence_store=presence_store,
        presence_ttl=parse(env, "PRESENCE_TTL_SECONDS", int, "a whole number of seconds >= 1", 1),
        presence_max_meta_bytes=parse(
            env,
            "PRESENCE_MAX_META_BYTES",
            int,
            f"a byte count from 2 to {edge}",
            2,
            edge,
        ),
        presence_max_members=parse(env, "PRESENCE_MAX_MEMBERS", int, "a member count >= 0"),
        presence_diff_window_ms=parse(
            env, "PRESENCE_DIFF_WINDOW_MS", int, "a whole number of milliseconds >= 0"
        ),
        presence_order_wait_ms=parse(
            env, "PRESENCE_ORDER_WAIT_MS", int, "a whole number of milliseconds, 0 to 1000", 0, 1000
        ),
        presence_leave_grace=parse(
            env,
            "PRESENCE_LEAVE_GRACE_SECONDS",
            float,
            "a number of seconds from 0 to 3600",
            0,
            3600,
        ),
        broker=broker,
        cors_origins=origins,
        api_keys=parse_api_keys("API_KEYS", env.given("API_KEYS")),
        ws_allowed_origins=ws_origins,
        http_require_json=flag("HTTP_REQUIRE_JSON", env.value("HTTP_REQUIRE_JSON")),
        **token_settings(env),
        jwt_user_claim=env.value("JWT_USER_CLAIM"),
        **access_settings(env),
        log_level=choice("LOG_LEVEL", env.value("LOG_LEVEL").lower(), LOG_LEVELS),
        log_format=choice("LOG_FORMAT", env.value("LOG_FORMAT").lower(), LOG_FORMATS),
        metrics=choice("METRICS", env.value("METRICS").lower(), METRICS_MODES),
        playground=playground_on(env),
        ws_ping_interval=ping_interval or None,
        ws_ping_timeout=ping_timeout or None,
        ws_max_frame_bytes=parse(
            env,
            "WS_MAX_FRAME_BYTES",
            int,
            f"a byte count from 256 to {edge}",
            256,
            edge,
        ),
        ws_send_queue_size=parse(env, "WS_SEND_QUEUE_SIZE", int, "a frame count >= 1", 1),
        ws_send_queue_bytes=parse(env, "WS_SEND_QUEUE_BYTES", int, "a byte count >= 65536", 65536),
        broker_max_message_bytes=message_max,
        http_max_body_bytes=parse(
            env,
            "HTTP_MAX_BODY_BYTES",
            int,
            f"a byte count from 64 to {edge}",
            64,
            edge,
            default=str(edge),
        ),
        start_timeout=parse(
            env,
            "START_TIMEOUT_SECONDS",
            float,
            "a number of seconds from 0.001 to 86400",
            0.001,
            86400,
        ),
        probe_interval=parse(
            env,
            "BROKER_PROBE_INTERVAL_SECONDS",
            float,
            "a number of seconds from 0 to 3600",
            0,
            3600,
        ),
        probe_timeout=parse(
            env,
            "BROKER_PROBE_TIMEOUT_SECONDS",
            float,
            "a number of seconds from 0.01 to 3600",
            0.01,
            3600,
        ),
        server_api_timeout=parse(
            env,
            "SERVER_API_TIMEOUT_SECONDS",
            float,
            "a number of seconds from 0.01 to 60",
            0.01,
            60,
        ),
        ws_max_frames_per_second=parse(
            env, "WS_MAX_FRAMES_PER_SECOND", float, "a number of frames >= 0"
        ),
        ws_frame_burst=parse(env, "WS_FRAME_BURST", int, "a frame count >= 1", 1),
        ws_max_subscriptions=parse(env, "WS_MAX_SUBSCRIPTIONS", int, "a channel count >= 0"),
        ws_max_presence_joins=parse(env, "WS_MAX_PRESENCE_JOINS", int, "a channel count >= 0"),
        ws_max_connections_per_user=parse(
            env, "WS_MAX_CONNECTIONS_PER_USER", int, "a connection count >= 0"
        ),
        ws_max_connections=parse(env, "WS_MAX_CONNECTIONS", int, "a connection count >= 0"),
        presence_resync_interval=parse(
            env, "PRESENCE_RESYNC_INTERVAL_MS", int, "a whole number of milliseconds >= 0"
        )
        / 1000,
        event_name_max_length=parse(env, "EVENT_NAME_MAX_LENGTH", int, "a length >= 1", 1),
        # msgspec recurses once per level; far below Python's recursion limit, with room.
        json_max_depth=bounded(env, "JSON_MAX_DEPTH", 1, 500),
        handshake_timeout=parse(
            env, "HANDSHAKE_TIMEOUT_SECONDS", float, "a number of seconds > 0", 0.001
        ),
        # 8190: the longest line websockets' handshake parser reads (8192 with CRLF).
        http_max_request_line=bounded(env, "HTTP_MAX_REQUEST_LINE_BYTES", 256, 8190),
        http_max_header_bytes=parse(
            env, "HTTP_MAX_HEADER_BYTES", int, "a byte count >= 1024", 1024
        ),
        shutdown_drain_seconds=parse(
            env, "SHUTDOWN_DRAIN_SECONDS", float, "a number of seconds from 0 to 3600", 0, 3600
        ),
        trusted_proxies=trusted_proxies(env),
        http_access_log=flag("HTTP_ACCESS_LOG", env.value("HTTP_ACCESS_LOG")),
        ws_max_connection_age=parse(
            env, "WS_MAX_CONNECTION_AGE_SECONDS", float, "a number of seconds >= 0 (0: off)"
        )
        or None,
        history_channels=parse_history_channels("HISTORY_CHANNELS", env.given("HISTORY_CHANNELS")),
        history_size=bounded(env, "HISTORY_SIZE", 1, 100_000),
        history_ttl=bounded(env, "HISTORY_TTL_SECONDS", 1, 30 * 86400),
        **webhook_settings(env, cluster=redis.cluster and presence_store == "redis"),
        idempotency_window=bounded(env, "IDEMPOTENCY_WINDOW_SECONDS", 1, 86400),
        env=merged,
    )


def playground_on(env: Env) -> bool:
    """PLAYGROUND when set; else on, unless the gateway is secured (a JWT key or API keys):
    such a deployment faces users, who have no use for a test page on it."""
    given = env.given("PLAYGROUND")
    if given is not None:
        return flag("PLAYGROUND", given)
    return not any(env.given(name) for name in PLAYGROUND_OFF_WHEN)


# Any of these set turns the playground's default off (realtime/server/playground.py says so).
PLAYGROUND_OFF_WHEN = ("JWT_SECRET", "JWT_PUBLIC_KEY", "JWT_JWKS_URL", "API_KEYS")


def playground_off_by(environ: Mapping[str, str]) -> str:
    """The variables that turned the playground's default off, for the start-up line."""
    env = Env(environ)
    return ", ".join(name for name in PLAYGROUND_OFF_WHEN if env.given(name))


def trusted_proxies(env: Env) -> tuple[str, ...]:
    """TRUSTED_PROXIES: ``*``, ``none``, or IP addresses and networks. An existing deployment's
    FORWARDED_ALLOW_IPS (uvicorn's own variable, which we now set explicitly) is honoured when
    TRUSTED_PROXIES is not set, so it keeps trusting what it trusted."""
    name = "TRUSTED_PROXIES"
    text = env.given(name)
    if text is None and env.given("FORWARDED_ALLOW_IPS") is not None:
        name, text = "FORWARDED_ALLOW_IPS", env.given("FORWARDED_ALLOW_IPS")
    items = split_list(text or env.value("TRUSTED_PROXIES"))
    if items == ("*",) or [item.lower() for item in items] == ["none"]:
        return () if items[0].lower() == "none" else items
    for item in items:
        try:
            ipaddress.ip_network(item)
        except ValueError:
            raise ConfigError(
                name,
                f"{item!r} is not an IP address or network (like 10.0.0.0/8); the value is *,"
                " none, or a comma-separated list of them",
            ) from None
    if not items:
        raise ConfigError(name, "is empty: use none to trust no proxy")
    return items


def describe(settings: Settings) -> str:
    """The first log line: where the gateway listens and on which backends it runs."""
    text = f"broker={settings.broker} presence={settings.presence_store}"
    if "redis" in (settings.broker, settings.presence_store):
        text += f" redis={settings.redis.display}"
    if settings.broker == "memory" and settings.presence_store == "memory":
        text += " (embedded: in-process backends, one instance, no Redis needed)"
    if settings.history_channels:
        text += (
            f" history={'|'.join(settings.history_channels)}"
            f" (last {settings.history_size}, {settings.history_ttl}s)"
        )
    if settings.webhook_url is not None:
        # Scheme and host only: a webhook URL may carry credentials or a token in its path.
        parts = urlsplit(settings.webhook_url)
        port = f":{parts.port}" if parts.port else ""
        text += (
            f" webhooks={parts.scheme}://{parts.hostname}{port}"
            f" ({','.join(settings.webhook_events)})"
        )
    return text
