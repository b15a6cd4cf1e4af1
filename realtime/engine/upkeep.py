"""The presence background work: refresh this instance's entries, reap expired ones, and
re-assert ours in a store that lost them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from realtime.errors import BrokerError, PresenceError
from realtime.presence.base import ChannelState, Entry, PresenceStore

log = logging.getLogger("realtime.engine.upkeep")

Entries = Callable[[str | None], list[Entry]]  # this instance's entries, of one channel or all
Channels = Callable[[], set[str]]  # the channels this instance's clients joined or watch
Check = Callable[[str, ChannelState], None]  # look at the subscribers' views of a channel


class Upkeep:
    def __init__(
        self,
        store: PresenceStore,
        ttl: int,
        entries: Entries,
        channels: Channels,
        check: Check,
    ) -> None:
        self._store = store
        self._ttl = ttl
        self._entries = entries
        self._channels = channels
        self._check = check
        # How often expired members are looked for: a killed instance's users are announced
        # gone at most this long after their expiry.
        self.reap_interval = max(0.2, min(1.0, ttl / 4))
        self._states: dict[str, ChannelState] = {}
        self._reasserts: dict[str, asyncio.Task[None]] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._loop(self.refresh, self._ttl / 3), name="presence-refresh"),
            asyncio.create_task(self._loop(self.reap, self.reap_interval), name="presence-reap"),
        ]

    async def close(self) -> None:
        for task in [*self._tasks, *self._reasserts.values()]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        self._reasserts.clear()

    async def _loop(self, step: Callable[[], Awaitable[None]], interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await step()
            except (PresenceError, BrokerError) as exc:
                log.warning("presence %s failed: %s", step.__name__, exc)
            except Exception:
                log.exception("presence %s failed", step.__name__)

    async def refresh(self) -> None:
        # Every TTL/3, well inside the TTL: a live member never expires, and entries the store
        # lost are re-added (with their join events).
        await self._store.refresh(self._entries(None))

    def reassert(self, channel: str) -> None:
        """Re-add this instance's entries of ``channel`` soon, once at a time per channel."""
        if channel not in self._reasserts and self._entries(channel):
            self._reasserts[channel] = asyncio.create_task(
                self._reassert_now(channel), name="presence-reassert"
            )

    async def _reassert_now(self, channel: str) -> None:
        try:
            added = await self._store.refresh(self._entries(channel))
            if added:
                log.info("re-asserted %d presence entries", added, extra={"channel": channel})
        except PresenceError as exc:
            log.warning("presence re-assert failed: %s", exc, extra={"channel": channel})
        finally:
            self._reasserts.pop(channel, None)

    async def reap(self) -> None:
        """Reap the channels this instance serves and check its subscribers' views."""
        channels = self._channels()
        states = await self._store.reap(channels) if channels else {}
        for channel in set(self._states) - channels:
            del self._states[channel]
        for channel, now in states.items():
            before = self._states.get(channel)
            self._states[channel] = now
            if now.version == 0 or (before is not None and before.epoch != now.epoch):
                # No version while we hold live entries, or a new epoch: the store may have
                # lost its state (Redis came back empty). Re-assert ours at once.
                self.reassert(channel)
            if before is None or before.epoch != now.epoch:
                continue  # events in flight settle it; the next tick looks again
            self._check(channel, before)
