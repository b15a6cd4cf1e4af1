"""An example broker plugin: every ExampleBroker in one process shares one in-process switch.

Real plugins talk to a real MQ; this one only shows the shape a plugin takes: settings read
and checked in ``from_settings`` (no I/O there), a ``start`` that is bounded, a receive loop
that survives a failing ``deliver``, and a ``close`` that leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from realtime.errors import BrokerError, ConfigError

Deliver = Callable[[str, str, bytes], Awaitable[None]]
IN_PROCESS = "in-process"
_SWITCH: set[ExampleBroker] = set()
log = logging.getLogger("realtime_example")


class ExampleBroker:
    def __init__(self, name: str, address: str = IN_PROCESS, queue_size: int = 10_000) -> None:
        self.name = name
        self.address = address
        self._interest: set[tuple[str, str]] = set()
        self._inbox: asyncio.Queue[tuple[str, str, bytes]] = asyncio.Queue(maxsize=queue_size)
        self._pump: asyncio.Task[None] | None = None
        self._closed = False

    @classmethod
    def from_settings(cls, settings: Any) -> ExampleBroker:
        # A plugin reads its own prefixed settings through settings.get() and names the
        # variable in a ConfigError; the gateway prints it as one line and exits 2.
        text = settings.get("BROADCAST_EXAMPLE_QUEUE_SIZE", "10000")
        if not text.isdigit() or int(text) < 1:
            raise ConfigError("BROADCAST_EXAMPLE_QUEUE_SIZE", f"{text!r} is not a count >= 1")
        return cls(
            settings.get("BROADCAST_EXAMPLE_NAME", "example"),
            settings.get("BROADCAST_EXAMPLE_ADDR", IN_PROCESS),
            int(text),
        )

    @property
    def ready(self) -> bool:
        return self._pump is not None and not self._closed

    async def start(self, deliver: Deliver) -> None:
        # Bounded: a start that cannot connect fails at once (or returns not ready and keeps
        # retrying in the background); it never retries inside start() for ever.
        if self.address != IN_PROCESS:
            raise BrokerError(f"cannot reach {self.address}: the example broker is in-process")
        _SWITCH.add(self)
        self._pump = asyncio.create_task(self._run(deliver))

    async def _run(self, deliver: Deliver) -> None:
        while True:
            kind, channel, data = await self._inbox.get()
            if (kind, channel) not in self._interest:
                continue
            try:
                await deliver(kind, channel, data)
            except Exception:
                # The loop survives anything but cancellation.
                log.exception("deliver failed", extra={"channel": channel})

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
