"""Test support shipped with the package, for our tests and plugin authors' alike.

- ``contract``: ``BrokerContract``, the suite every broker runs against itself (needs pytest
  and pytest-asyncio, imported only when it is used);
- ``gateway``: real gateways (in process or ``python -m realtime``) and WebSocket clients;
- ``flows``: the end-to-end flows two gateway instances must carry, shared by every backend;
- ``services``: real Redis servers (standalone, Sentinel, Cluster), the plumbing the
  plugins' own launchers (``realtime_kafka.testing``, ``realtime_rabbitmq.testing``) build on,
  and ``native_server`` for any other server binary on a free port;
- ``waiting``: ``wait_until`` / ``wait_until_async``, ``free_port``, ``port_open``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from realtime.testing.contract import BrokerContract, Inbox

__all__ = ["BrokerContract", "Inbox"]


def __getattr__(name: str) -> Any:
    # Lazy, so importing realtime.testing.services does not require pytest-asyncio.
    if name in __all__:
        from realtime.testing import contract

        return getattr(contract, name)
    raise AttributeError(name)
