"""An example broker plugin: every ExampleBroker in one process shares one in-process switch.

Real plugins talk to a real MQ; this one only shows the shape a plugin takes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from realtime.errors import BrokerError

Deliver = Callable[[str, str, bytes], Awaitable[None]]
_SWITCH: set[ExampleBroker] = set()


class ExampleBroker:
    def __init__(self, name: str) -> None:
        self.name = name
        self._interest: set[tuple[str, str]] = set()
        self._inbox: asyncio.Queue[tuple[str, str, bytes]] = asyncio.Queue(maxsize=10_000)
        self._pump: asyncio.Task[None] | None = None
        self._closed = False

    @classmethod
    def from_settings(cls, settings: Any) -> ExampleBroker:
        # A plugin reads its own prefixed settings through settings.get().
        return cls(settings.get("BROADCAST_EXAMPLE_NAME", "example") or "example")

    @property
    def ready(self) -> bool:
        return self._pump is not None and not self._closed

    async def start(self, deliver: Deliver) -> None:
        _SWITCH.add(self)
        self._pump = asyncio.create_task(self._run(deliver))

    async def _run(self, deliver: Deliver) -> None:
        while True:
            kind, channel, data = await self._inbox.get()
            if (kind, channel) in self._interest:
                await deliver(kind, channel, data)

    async def publish(self, kind: str, channel: str, data: bytes) -> None:
        if self._closed:
            raise BrokerError("example broker is closed")
        for peer in list(_SWITCH):
            if (kind, channel) in peer._interest:
                await peer._inbox.put((kind, channel, data))

    async def subscribe(self, kind: str, channel: str) -> None:
        self._interest.add((kind, channel))

    async def unsubscribe(self, kind: str, channel: str) -> None:
        self._interest.discard((kind, channel))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        _SWITCH.discard(self)
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
