"""A plugin author's test module: our broker against the gateway's own contract suite."""

from __future__ import annotations

from realtime_example import ExampleBroker

from realtime.brokers.base import Broker
from realtime.testing import BrokerContract


class TestExampleBroker(BrokerContract):
    async def make_broker(self) -> Broker:
        return ExampleBroker("contract")
