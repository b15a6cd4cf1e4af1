"""The backends a node runs on, started each within a bound and closed once each."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from realtime.brokers.base import Broker, Deliver
from realtime.errors import RealtimeError, StartError
from realtime.presence.base import PresenceStore, Publish
from realtime.wire.messages import Kind


async def _within(start: Awaitable[None], seconds: float | None, what: str) -> None:
    try:
        async with asyncio.timeout(seconds) as bound:
            await start
    except TimeoutError:
        if not bound.expired():
            raise StartError(f"{what} failed to start: TimeoutError") from None
        raise StartError(
            f"{what} did not start within {seconds:g}s (START_TIMEOUT_SECONDS)"
        ) from None
    except RealtimeError as exc:
        raise StartError(f"{what} failed to start: {exc}") from exc
    except Exception as exc:
        raise StartError(f"{what} failed to start: {type(exc).__name__}: {exc}") from exc


class Backends:
    """The brokers, by the kind each carries, and the presence store."""

    def __init__(self, brokers: dict[Kind, Broker], store: PresenceStore) -> None:
        self.brokers = brokers
        self.store = store

    async def start(self, deliver: Deliver, publish: Publish, seconds: float | None) -> None:
        """Start the brokers, then the store, each within ``seconds``; raises
        :class:`StartError` (one line, for the log) when one fails or takes longer."""
        for broker in self._distinct():
            await _within(broker.start(deliver), seconds, f"broker {type(broker).__name__}")
        what = f"presence store {type(self.store).__name__}"
        await _within(self.store.start(publish), seconds, what)

    async def close(self) -> None:
        for broker in self._distinct():
            await broker.close()
        await self.store.close()

    def _distinct(self) -> list[Broker]:
        # One broker may carry both kinds: start and close it once.
        return list({id(broker): broker for broker in self.brokers.values()}.values())
