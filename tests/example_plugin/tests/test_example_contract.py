"""A plugin author's test module: our broker against the gateway's own contract suite."""

from __future__ import annotations

from typing import ClassVar

from realtime_example import ExampleBroker

from realtime.brokers.base import Broker
from realtime.testing import BrokerContract


class TestExampleBroker(BrokerContract):
    # What the entry point names, settings it accepts, and for each variable a bad value.
    plugin = ExampleBroker
    good_settings: ClassVar[dict[str, str]] = {"BROADCAST_EXAMPLE_QUEUE_SIZE": "100"}
    bad_settings: ClassVar[dict[str, dict[str, str]]] = {
        "BROADCAST_EXAMPLE_QUEUE_SIZE": {"BROADCAST_EXAMPLE_QUEUE_SIZE": "none"},
    }

    async def make_broker(self) -> Broker:
        return ExampleBroker("contract")

    async def make_unreachable_broker(self) -> Broker:
        # Nothing listens there (an in-process broker has no server to stop).
        return ExampleBroker("down", address="127.0.0.1:1")
