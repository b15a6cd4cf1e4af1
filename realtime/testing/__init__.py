"""Test support shipped with the package: the broker contract suite, real servers, real clients.

``BrokerContract`` needs pytest and pytest-asyncio, imported only when it is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from realtime.testing.contract import BrokerContract, Inbox

__all__ = ["BrokerContract", "Inbox"]


def __getattr__(name: str) -> Any:
    # Lazy, so importing realtime.testing.servers does not require pytest-asyncio.
    if name in __all__:
        from realtime.testing import contract

        return getattr(contract, name)
    raise AttributeError(name)
