"""The Kafka broker's settings, parsed from the gateway's :class:`Settings`.

Every value comes through ``settings.get(NAME)``: the core's config module is the only reader
of the environment and ``.env``. A value that does not parse raises :class:`ConfigError`
naming its variable, so a bad deployment stops at start, not at the first publish.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from realtime.errors import ConfigError

if TYPE_CHECKING:
    from realtime.config import Settings

PREFIX = "BROADCAST_KAFKA_"
DEFAULT_TOPIC = "realtime-broadcast"
# 1 MiB of payload must pass byte-exact; the rest is room for the key, headers and batch
# framing. The producer, the topic it creates and the consumer's fetch all use this figure.
DEFAULT_MAX_MESSAGE_BYTES = 2 * 1024 * 1024
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
ACKS = ("1", "all")
_TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True)
class KafkaConfig:
    """Everything the broker needs; build it with :meth:`from_settings` or by hand in tests."""

    bootstrap: tuple[str, ...]
    topic: str = DEFAULT_TOPIC
    partitions: int = 6
    #: ``None``: as many replicas as brokers, at most 3 (decided when the topic is created).
    replication_factor: int | None = None
    create_topic: bool = True
    retention_ms: int = 3_600_000
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    acks: str = "all"
    timeout: float = 5.0
    health_interval: float = 1.0
    client_id: str = "realtime-mq"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    tls: bool = False
    tls_ca_file: str | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    tls_key_password: str | None = field(default=None, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> KafkaConfig:
        def get(name: str) -> str | None:
            value = settings.get(name)
            return None if value is None else value.strip() or None

        return cls.from_values(get)

    @classmethod
    def from_values(cls, get: Callable[[str], str | None]) -> KafkaConfig:
        """Parse from a lookup of raw values (``None`` when unset)."""

        def kafka(name: str) -> str | None:
            return get(PREFIX + name)

        sasl_mechanism = _sasl_mechanism(kafka("SASL_MECHANISM"))
        username, password = kafka("SASL_USERNAME"), kafka("SASL_PASSWORD")
        if sasl_mechanism is None and (username or password):
            raise ConfigError(
                PREFIX + "SASL_MECHANISM",
                f"required when SASL credentials are set: one of {' | '.join(SASL_MECHANISMS)}",
            )
        if sasl_mechanism is not None:
            if username is None:
                raise ConfigError(PREFIX + "SASL_USERNAME", f"required with {sasl_mechanism}")
            if password is None:
                raise ConfigError(PREFIX + "SASL_PASSWORD", f"required with {sasl_mechanism}")

        ca, cert, key = (
            _file(PREFIX + n, kafka(n)) for n in ("TLS_CA_FILE", "TLS_CERT_FILE", "TLS_KEY_FILE")
        )
        if (cert is None) != (key is None):
            missing = "TLS_KEY_FILE" if key is None else "TLS_CERT_FILE"
            raise ConfigError(PREFIX + missing, "TLS_CERT_FILE and TLS_KEY_FILE go together")
        tls_text = kafka("TLS")
        tls = _bool(PREFIX + "TLS", tls_text) if tls_text is not None else None
        if tls is False and (ca or cert):
            raise ConfigError(PREFIX + "TLS", "is off but TLS files are set")
        acks = (kafka("ACKS") or "all").lower()
        if acks not in ACKS:
            raise ConfigError(PREFIX + "ACKS", f"{acks!r} is not one of {' | '.join(ACKS)}")
        replication = kafka("REPLICATION_FACTOR")
        create = kafka("CREATE_TOPIC")
        config = cls(
            bootstrap=parse_bootstrap(get("BROADCAST_MQ_ADDR")),
            topic=_topic(kafka("TOPIC") or DEFAULT_TOPIC),
            partitions=_int(PREFIX + "PARTITIONS", kafka("PARTITIONS"), 6, 1),
            replication_factor=(
                None
                if replication in (None, "auto")
                else _int(PREFIX + "REPLICATION_FACTOR", replication, 1, 1)
            ),
            create_topic=True if create is None else _bool(PREFIX + "CREATE_TOPIC", create),
            retention_ms=_int(PREFIX + "RETENTION_MS", kafka("RETENTION_MS"), 3_600_000, 1000),
            max_message_bytes=_int(
                PREFIX + "MAX_MESSAGE_BYTES",
                kafka("MAX_MESSAGE_BYTES"),
                DEFAULT_MAX_MESSAGE_BYTES,
                1024,
            ),
            acks=acks,
            timeout=_seconds(PREFIX + "TIMEOUT_SECONDS", kafka("TIMEOUT_SECONDS"), 5.0),
            health_interval=_seconds(
                PREFIX + "HEALTH_INTERVAL_SECONDS", kafka("HEALTH_INTERVAL_SECONDS"), 1.0
            ),
            client_id=kafka("CLIENT_ID") or "realtime-mq",
            sasl_mechanism=sasl_mechanism,
            sasl_username=username,
            sasl_password=password,
            tls=bool(tls) or ca is not None or cert is not None,
            tls_ca_file=ca,
            tls_cert_file=cert,
            tls_key_file=key,
            tls_key_password=kafka("TLS_KEY_PASSWORD"),
        )
        config.ssl_context()  # unreadable or mismatched TLS files fail here, at start
        return config

    @property
    def security_protocol(self) -> str:
        if self.sasl_mechanism is not None:
            return "SASL_SSL" if self.tls else "SASL_PLAINTEXT"
        return "SSL" if self.tls else "PLAINTEXT"

    def ssl_context(self) -> ssl.SSLContext | None:
        """A verifying client context (system CAs unless a CA file is given), or None."""
        if not self.tls:
            return None
        try:
            context = ssl.create_default_context(cafile=self.tls_ca_file)
            if self.tls_cert_file is not None:
                context.load_cert_chain(
                    self.tls_cert_file, self.tls_key_file, self.tls_key_password
                )
        except (OSError, ssl.SSLError) as exc:
            # Which file is wrong is in the message; the CA is loaded first.
            raise ConfigError(PREFIX + "TLS", f"cannot load TLS files: {exc}") from exc
        return context

    def client_options(self) -> dict[str, Any]:
        """The connection options aiokafka's producer, consumer and admin client share."""
        options: dict[str, Any] = {
            "bootstrap_servers": list(self.bootstrap),
            "client_id": self.client_id,
            "request_timeout_ms": int(self.timeout * 1000),
            "security_protocol": self.security_protocol,
            "ssl_context": self.ssl_context(),
        }
        if self.sasl_mechanism is not None:
            options |= {
                "sasl_mechanism": self.sasl_mechanism,
                "sasl_plain_username": self.sasl_username,
                "sasl_plain_password": self.sasl_password,
            }
        return options


def parse_bootstrap(value: str | None) -> tuple[str, ...]:
    """``host:port[,host:port...]`` -> a tuple of ``host:port``; ConfigError otherwise."""
    name = "BROADCAST_MQ_ADDR"
    if value is None or not value.strip():
        raise ConfigError(name, "required for the kafka broker: bootstrap servers host:port[,...]")
    servers = []
    for part in value.split(","):
        server = part.strip()
        host, sep, port = server.rpartition(":")
        host = host.strip("[]")
        if not sep or not host or "/" in server or not port.isdigit():
            raise ConfigError(name, f"{server!r} is not host:port (bootstrap servers, comma list)")
        if not 0 < int(port) < 65536:
            raise ConfigError(name, f"{server!r}: port out of range")
        servers.append(server)
    return tuple(servers)


def _topic(value: str) -> str:
    if not _TOPIC_NAME.fullmatch(value) or value in (".", ".."):
        raise ConfigError(
            PREFIX + "TOPIC", f"{value!r} is not a Kafka topic name ([A-Za-z0-9._-], 1-249)"
        )
    return value


def _int(name: str, value: str | None, default: int, minimum: int) -> int:
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(name, f"{value!r} is not a whole number >= {minimum}") from None
    if number < minimum:
        raise ConfigError(name, f"{value!r} is not a whole number >= {minimum}")
    return number


def _seconds(name: str, value: str | None, default: float) -> float:
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(name, f"{value!r} is not a number of seconds > 0") from None
    if not number > 0 or number == float("inf"):
        raise ConfigError(name, f"{value!r} is not a number of seconds > 0")
    return number


def _bool(name: str, value: str) -> bool:
    text = value.lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(name, f"{value!r} is not a boolean (1/0, true/false, yes/no, on/off)")


def _sasl_mechanism(value: str | None) -> str | None:
    if value is None:
        return None
    mechanism = value.upper()
    if mechanism not in SASL_MECHANISMS:
        raise ConfigError(
            PREFIX + "SASL_MECHANISM", f"{value!r} is not one of {' | '.join(SASL_MECHANISMS)}"
        )
    return mechanism


def _file(name: str, value: str | None) -> str | None:
    if value is not None and not Path(value).is_file():
        raise ConfigError(name, f"{value!r} is not a readable file")
    return value
