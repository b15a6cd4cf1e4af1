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


def load_broker(name: str, settings: Settings) -> Broker:
    """Import the plugin registered as ``name`` and build it from the settings."""
    ep = _entry_points().get(name)
    if ep is None:
        raise BrokerNotFound(name, available())
    try:
        factory: Any = ep.load()
    except ImportError as exc:
        raise ConfigError("BROADCAST_MQ_TYPE", f"broker {name!r} failed to import: {exc}") from exc
    try:
        broker: Broker = factory.from_settings(settings)
    except ConfigError:
        raise
    except Exception as exc:
        # A plugin's own mistake still reads as one line naming what to look at.
        raise ConfigError(
            "BROADCAST_MQ_TYPE",
            f"broker {name!r} could not be built from the settings: {type(exc).__name__}: {exc}",
        ) from exc
    log.debug("loaded broker", extra={"broker": name, "target": ep.value})
    return broker


def check_broker_settings(settings: Settings) -> None:
    """Build the selected broker from the settings and drop it, unstarted: a plugin's
    :class:`ConfigError` then stops the start before the port is bound, printed like a core
    setting's. ``from_settings`` only reads settings (docs/plugins.md), so this costs nothing."""
    load_broker(settings.broker, settings)
