"""Brokers are looked up lazily by name in the ``realtime.brokers`` entry point group."""

from __future__ import annotations

import logging
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any

from realtime.errors import BrokerNotFound, ConfigError

if TYPE_CHECKING:
    from realtime.brokers.base import Broker
    from realtime.config import Settings

GROUP = "realtime.brokers"
log = logging.getLogger("realtime.broker")


def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def available() -> list[str]:
    """Names of the installed broker plugins, sorted."""
    return sorted(_entry_points())


def check_broker(name: str) -> None:
    """Raise :class:`BrokerNotFound` (a ConfigError) unless ``name`` is installed."""
    if name not in _entry_points():
        raise BrokerNotFound(name, available())


def load_broker(name: str, settings: Settings) -> Broker:
    """Import the plugin registered as ``name`` and build it from the settings."""
    ep = _entry_points().get(name)
    if ep is None:
        raise BrokerNotFound(name, available())
    try:
        factory: Any = ep.load()
    except ImportError as exc:
        raise ConfigError("BROADCAST_MQ_TYPE", f"broker {name!r} failed to import: {exc}") from exc
    broker: Broker = factory.from_settings(settings)
    log.debug("loaded broker", extra={"broker": name, "target": ep.value})
    return broker
