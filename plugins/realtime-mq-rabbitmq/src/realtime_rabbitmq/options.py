"""The plugin's settings, read from the gateway's Settings (never from os.environ)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit, urlunsplit

from realtime.errors import ConfigError

if TYPE_CHECKING:
    from realtime.config import Settings

T = TypeVar("T", int, float)

SCHEMES = ("amqp", "amqps")
#: Exchange types whose bindings match a routing key exactly as we encode it. ``fanout`` and
#: ``headers`` would ignore the key (every instance would receive every channel), so no.
EXCHANGE_TYPES = ("topic", "direct")
# What RabbitMQ accepts in an exchange name; "amq." names are reserved for the server.
_EXCHANGE_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,255}")


@dataclass(frozen=True)
class RabbitMQOptions:
    url: str = field(repr=False)
    exchange: str = "realtime"
    exchange_type: str = "topic"
    publish_timeout: float = 5.0
    reconnect_interval: float = 0.5
    prefetch: int = 256

    @property
    def display_url(self) -> str:
        """The URL without its password, for logs."""
        return hide_password(self.url)

    @classmethod
    def from_settings(cls, settings: Settings) -> RabbitMQOptions:
        return cls(
            url=_url(settings),
            exchange=_exchange(settings.get("BROADCAST_RABBITMQ_EXCHANGE", "realtime")),
            exchange_type=_exchange_type(settings.get("BROADCAST_RABBITMQ_EXCHANGE_TYPE")),
            publish_timeout=_number(
                settings, "BROADCAST_RABBITMQ_PUBLISH_TIMEOUT_SECONDS", float, 5.0, 0.1, 60.0
            ),
            reconnect_interval=_number(
                settings, "BROADCAST_RABBITMQ_RECONNECT_SECONDS", float, 0.5, 0.1, 300.0
            ),
            prefetch=_number(settings, "BROADCAST_RABBITMQ_PREFETCH", int, 256, 1, 65535),
        )


def check_amqp_url(variable: str, url: str) -> str:
    """``url`` if it is an amqp:// or amqps:// URL with a host, else a ConfigError."""
    url = url.strip()
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError on a port that does not parse
    except ValueError as exc:
        raise ConfigError(variable, f"not a valid AMQP URL: {exc}") from exc
    if parts.scheme not in SCHEMES:
        raise ConfigError(
            variable, f"must be an amqp:// or amqps:// URL, got scheme {parts.scheme!r}"
        )
    if not parts.hostname:
        raise ConfigError(variable, "the AMQP URL names no host")
    return url


def hide_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")
    user = (parts.username or "") + ":***"
    return urlunsplit(parts._replace(netloc=f"{user}@{netloc[2]}"))


def _url(settings: Settings) -> str:
    given = settings.get("BROADCAST_RABBITMQ_URL")
    if given is not None:
        return check_amqp_url("BROADCAST_RABBITMQ_URL", given)
    addr = settings.get("BROADCAST_MQ_ADDR")
    if addr is not None and urlsplit(addr.strip()).scheme in SCHEMES:
        return check_amqp_url("BROADCAST_MQ_ADDR", addr)
    hint = f" (BROADCAST_MQ_ADDR={addr!r} is not an AMQP URL)" if addr is not None else ""
    raise ConfigError(
        "BROADCAST_RABBITMQ_URL",
        "the rabbitmq broker needs an AMQP URL, e.g. amqp://user:pass@host:5672/vhost; "
        f"set BROADCAST_RABBITMQ_URL or an amqp:// BROADCAST_MQ_ADDR{hint}",
    )


def _exchange(name: str | None) -> str:
    name = (name or "realtime").strip()
    if _EXCHANGE_NAME.fullmatch(name) is None or name.startswith("amq."):
        raise ConfigError(
            "BROADCAST_RABBITMQ_EXCHANGE",
            f"{name!r} is not a usable exchange name (letters, digits, - _ . :, "
            "at most 255, not starting with 'amq.')",
        )
    return name


def _exchange_type(value: str | None) -> str:
    kind = (value or "topic").strip().lower()
    if kind not in EXCHANGE_TYPES:
        raise ConfigError(
            "BROADCAST_RABBITMQ_EXCHANGE_TYPE",
            f"{value!r} is not supported; use one of {', '.join(EXCHANGE_TYPES)}",
        )
    return kind


def _number(
    settings: Settings, name: str, cast: Callable[[str], T], default: T, low: T, high: T
) -> T:
    raw = settings.get(name)
    if raw is None:
        return default
    try:
        value = cast(raw.strip())
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise ConfigError(name, f"{raw!r} is not a number between {low} and {high}")
    return value
