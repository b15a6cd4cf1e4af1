"""The broker contract: one suite every backend runs against itself, ours or a third party's.

Subclass :class:`BrokerContract` in a test module, tell it how to build a broker against your
real server, and optionally how to stop and start that server::

    from realtime.testing import BrokerContract

    class TestMyBroker(BrokerContract):
        async def make_broker(self) -> Broker:
            return MyBroker(url=MY_SERVER_URL)

        async def stop_server(self) -> None:   # optional: enables the restart cases
            ...

        async def start_server(self) -> None:
            ...

Optional hooks and attributes widen it (each case that needs one is skipped, saying which,
without it):

- ``make_unreachable_broker()``: a broker pointed at an address where nothing listens. Its
  ``start()`` must return within :attr:`start_timeout` (not ready) or raise ``BrokerError``;
- ``plugin`` (what your entry point names), ``good_settings`` (variables ``from_settings``
  accepts) and ``bad_settings`` (variable -> variables making that one bad): ``from_settings``
  builds a broker from the first, raises ``ConfigError`` naming the variable for each of the
  others.

The ``test_history_*`` cases run gateway nodes over your broker with history on (one shared
in-process history store): concurrent publishers on two instances reach every subscriber in
offset order, once; a broadcast stored but never carried by the MQ is filled from history; a
gap history no longer holds is reported (``broadcasts_lost``) and order goes on.

Each test builds its brokers fresh, as separate gateway instances would. The pipelined-publish
cases run when the broker is a :class:`realtime.brokers.base.PipelinedBroker` and are skipped,
with the reason, when it is not. The suite needs
pytest and pytest-asyncio; its tests and fixtures are marked so that pytest-asyncio's strict
mode runs them too.
"""

from __future__ import annotations

from realtime.testing.contract.base import ContractBase, Inbox
from realtime.testing.contract.delivery import DeliveryCases
from realtime.testing.contract.failures import FailureCases
from realtime.testing.contract.history import HistoryCases
from realtime.testing.contract.lifecycle import LifecycleCases

__all__ = ["BrokerContract", "ContractBase", "Inbox"]


class BrokerContract(DeliveryCases, LifecycleCases, FailureCases, HistoryCases):
    """The whole suite: subclass it in a test module (see the module docstring)."""
