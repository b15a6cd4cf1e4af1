"""Channel -> local connections, and nothing else.

The hub subscribes a (kind, channel) upstream on its first local subscriber and unsubscribes
on its last (broadcaster's ``_base.py``), so an instance only receives the channels it serves.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Hashable, Mapping
from typing import Any, Protocol

from realtime import metrics
from realtime.brokers.base import Broker
from realtime.wire.frames import Outgoing
from realtime.wire.messages import KINDS, Kind


class Peer(Protocol):
    """A local connection as the hub and node see it."""

    user_id: str

    def send(self, frame: Outgoing) -> None:
        """Queue a frame without waiting; a peer that falls behind closes itself."""


class Batcher(Protocol):
    """Writes for many peers at once (the direct write path's ``Flusher``): a broadcast to a
    set of its peers is one call, not one per peer."""

    def fan_out(self, members: frozenset[Any], frame: Outgoing) -> None:
        """Queue ``frame`` to every peer in ``members``; the same set object for the same
        peers, so consecutive broadcasts to one channel can be recognised and written
        together."""


class Recipients:
    """A channel's local peers as :meth:`Hub.fan_out` sends to them, built on its first
    broadcast after the set changed: those written by a :class:`Batcher` (a peer with a
    ``batcher`` attribute), grouped by it, and the rest."""

    __slots__ = ("batches", "single")

    def __init__(self, peers: set[Peer]) -> None:
        batches: dict[Batcher, list[Peer]] = {}
        single: list[Peer] = []
        for peer in peers:
            batcher: Batcher | None = getattr(peer, "batcher", None)
            if batcher is None:
                single.append(peer)
            else:
                batches.setdefault(batcher, []).append(peer)
        self.batches = [(batcher, frozenset(members)) for batcher, members in batches.items()]
        self.single = tuple(single)


class Hub:
    def __init__(self, brokers: Mapping[Kind, Broker]) -> None:
        self._brokers = brokers
        self._subs: dict[Kind, dict[str, set[Peer]]] = {kind: {} for kind in KINDS}
        # Per (kind, channel), as of the last change of its set (see fan_out).
        self._recipients: dict[Kind, dict[str, Recipients]] = {kind: {} for kind in KINDS}
        # Serialises upstream changes per (kind, channel), so a subscribe racing an unsubscribe
        # of the same channel never leaves the broker out of step with the local set.
        self._locks = KeyLocks()

    def local(self, kind: Kind, channel: str) -> set[Peer]:
        return self._subs[kind].get(channel) or set()

    def fan_out(self, kind: Kind, channel: str, frame: Outgoing) -> None:
        """Queue ``frame`` to every local peer of ``channel``."""
        recipients = self._recipients[kind].get(channel)
        if recipients is None:
            peers = self._subs[kind].get(channel)
            if not peers:
                return
            recipients = self._recipients[kind][channel] = Recipients(peers)
        for batcher, members in recipients.batches:
            batcher.fan_out(members, frame)
        for peer in recipients.single:
            peer.send(frame)

    def names(self, kind: Kind) -> list[str]:
        return list(self._subs[kind])

    def channels(self, kind: Kind) -> int:
        return len(self._subs[kind])

    async def add(self, peer: Peer, kind: Kind, channel: str) -> None:
        subs = self._subs[kind]
        peers = subs.get(channel)
        if peers:
            if peer not in peers:
                metrics.SUBS[kind].inc()
            peers.add(peer)
            self._recipients[kind].pop(channel, None)
            return
        async with self._locks.hold((kind, channel)):
            peers = subs.get(channel)
            if peers is None:
                # Raises BrokerError before the peer is registered: the caller reports it.
                await self._brokers[kind].subscribe(kind, channel)
                peers = subs[channel] = set()
                metrics.SERVED[kind].inc()
            if peer not in peers:
                metrics.SUBS[kind].inc()
            peers.add(peer)
            self._recipients[kind].pop(channel, None)

    async def remove(self, peer: Peer, kind: Kind, channel: str) -> None:
        subs = self._subs[kind]
        peers = subs.get(channel)
        if peers is None or peer not in peers:
            return
        peers.discard(peer)
        self._recipients[kind].pop(channel, None)
        metrics.SUBS[kind].dec()
        if peers:
            return
        async with self._locks.hold((kind, channel)):
            if subs.get(channel) == set():
                del subs[channel]
                metrics.SERVED[kind].dec()
                await self._brokers[kind].unsubscribe(kind, channel)


class KeyLocks:
    """One lock per key, kept only while some task holds or awaits it."""

    def __init__(self) -> None:
        # key -> (its lock, how many tasks hold or wait for it)
        self._locks: dict[Hashable, tuple[asyncio.Lock, int]] = {}

    def __len__(self) -> int:
        return len(self._locks)

    def users(self, key: Hashable) -> int:
        """How many tasks hold or await ``key``'s lock."""
        entry = self._locks.get(key)
        return entry[1] if entry is not None else 0

    @contextlib.asynccontextmanager
    async def hold(self, key: Hashable) -> AsyncIterator[None]:
        lock, users = self._locks.get(key) or (asyncio.Lock(), 0)
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)
