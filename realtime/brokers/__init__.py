"""Message-queue backends between gateway instances, found by entry point."""

from __future__ import annotations

from realtime.brokers.base import Broker, Deliver
from realtime.brokers.registry import available, load_broker

__all__ = ["Broker", "Deliver", "available", "load_broker"]
