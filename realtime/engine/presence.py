"""Each local subscriber's view of a channel's members, kept exact and in order.

A subscriber first gets a ``presence_sync`` (the members as of the channel's version), then
every event after that version once, in ``seq`` order. Events that arrive before its sync is
sent are held and replayed after it. An event that arrives ahead of a missing one waits up to
the order wait for it (events published by racing instances may cross on the way); a gap
still open after that, a new epoch (the store lost its state), or too many held events make
the view inexact: the subscriber is held again and the channel's resync task sends it a fresh
sync, counted in :attr:`PresenceViews.resyncs`. A subscriber that asked for ``presence_diff``
gets events folded into one frame per window; one that asked for ``presence_chunk`` gets a big
sync in parts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import NamedTuple

from realtime import metrics
from realtime.engine.hub import Peer
from realtime.errors import PresenceError
from realtime.presence.base import ChannelState, Snapshot
from realtime.wire.frames import Outgoing
from realtime.wire.messages import BusMessage, Member, client_frame, diff_frame, sync_frame

log = logging.getLogger("realtime.engine.presence")

PENDING_LIMIT = 10_000  # events held for one subscriber awaiting its sync
AHEAD_LIMIT = 1_000  # events held for one subscriber awaiting a missing one

Sync = Callable[[str], Awaitable[Snapshot]]  # the store's sync: a channel's members at a version
Local = Callable[[str], Collection[Peer]]  # the local peers subscribed upstream to a channel
Reassert = Callable[[str], None]  # re-add this instance's entries of a channel to the store


@dataclass(eq=False)
class PresenceSub:
    """One connection's presence subscription to one channel.

    ``seen`` is the last version this client's view is exact at. While ``pending`` is a list,
    events are held there until the client's ``presence_sync`` is sent; then those after its
    version follow. ``resync`` asks the channel's resync task for a fresh sync.
    """

    peer: Peer
    channel: str
    diff: bool = False
    chunk: int = 0
    seen: int = 0
    epoch: str = ""
    pending: list[BusMessage] | None = None
    resync: bool = False
    asked: int = 0  # resync requests so far: a sync read before the latest one is not enough
    overflow: bool = False
    batch: list[BusMessage] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None
    # Events that came ahead of the next one (seq -> event), held since ``ahead_since``.
    ahead: dict[int, BusMessage] = field(default_factory=dict)
    ahead_since: float = 0.0

    def batch_event(self, message: BusMessage, window: float) -> None:
        """Add an in-order event to the diff the client gets at the end of the window."""
        self.batch.append(message)
        if window <= 0:
            self.flush()
        elif self.timer is None:
            self.timer = asyncio.get_running_loop().call_later(window, self.flush)

    def flush(self) -> None:
        """Send the batched events as one ``presence_diff``: each user's last state wins."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        batch, self.batch = self.batch, []
        if not batch:
            return
        final: dict[str, Member | None] = {}
        for message in batch:
            user_id = message.user_id or message.meta.user_id
            final[user_id] = (
                None
                if message.type == "presence_leave"
                else Member(user_id, message.meta.meta or {}, message.meta.updated_at)
            )
        joins = [member for member in final.values() if member is not None]
        leaves = [user_id for user_id, member in final.items() if member is None]
        self.peer.send(diff_frame(self.channel, joins, leaves, batch[0].seq, batch[-1].seq))


class Ticket(NamedTuple):
    """A held subscription and the resync request count its first sync answers."""

    sub: PresenceSub
    asked: int


Subscribers = Callable[[str], list[PresenceSub]]  # a channel's local presence subscribers
Gap = Callable[[PresenceSub, BusMessage | None], None]  # give a subscriber a fresh sync


class OrderWait:
    """Events held in a subscriber's ``ahead`` while it waits for a missing one, and one timer
    per channel (however many subscribers wait there) that ends the wait."""

    def __init__(self, wait: float, subscribers: Subscribers, gap: Gap) -> None:
        self._wait = wait
        self._subscribers = subscribers
        self._gap = gap
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def hold(self, sub: PresenceSub, message: BusMessage) -> None:
        """An event ahead of the next one. Instances that publish after their script (sharded
        Pub/Sub on a Cluster) may deliver their events crossed: wait a little for the missing
        one before calling it a gap (events lost while the bus reconnected)."""
        if self._wait <= 0 or len(sub.ahead) >= AHEAD_LIMIT:
            self._gap(sub, message)
            return
        loop = asyncio.get_running_loop()
        if not sub.ahead:
            sub.ahead_since = loop.time()
        sub.ahead[message.seq] = message
        if sub.channel not in self._timers:
            self._timers[sub.channel] = loop.call_later(self._wait, self._waited, sub.channel)

    def close(self) -> None:
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()

    def _waited(self, channel: str) -> None:
        """The channel's order wait is over: resync the subscribers whose gap is still open
        after their whole wait, and wait on for those whose wait began later."""
        self._timers.pop(channel, None)
        loop = asyncio.get_running_loop()
        now = loop.time()
        later: float | None = None
        for sub in self._subscribers(channel):
            if not sub.ahead:
                continue
            deadline = sub.ahead_since + self._wait
            if deadline <= now + 0.001:  # a timer may fire up to the clock's resolution early
                self._gap(sub, None)
            else:
                later = deadline if later is None else min(later, deadline)
        if later is not None:
            self._timers[channel] = loop.call_at(later, self._waited, channel)


class ResyncTasks:
    """At most one task per channel, sending a fresh sync to each local subscriber of it that
    asked for one (``resync``) until none is left."""

    def __init__(
        self,
        sync: Sync,
        subscribers: Subscribers,
        current: Callable[[PresenceSub], bool],
        send_sync: Callable[[PresenceSub, Snapshot, int], Awaitable[None]],
    ) -> None:
        self._sync = sync
        self._subscribers = subscribers
        self._current = current  # is this still its peer's subscription to its channel?
        self._send_sync = send_sync
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def running(self, channel: str) -> bool:
        return channel in self._tasks

    def start(self, channel: str) -> None:
        if channel not in self._tasks:
            self._tasks[channel] = asyncio.create_task(
                self._resync(channel), name="presence-resync"
            )

    async def close(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def _resync(self, channel: str) -> None:
        """Send a fresh sync to every local subscriber of ``channel`` that asked for one."""
        try:
            while True:
                waiting = [(s, s.asked) for s in self._subscribers(channel) if s.resync]
                if not waiting:
                    return
                try:
                    snapshot = await self._sync(channel)
                except PresenceError as exc:
                    log.warning("presence resync failed: %s", exc, extra={"channel": channel})
                    return  # the reaper's tick tries again
                for sub, asked in waiting:
                    # Skip a subscriber that unsubscribed (or re-subscribed) meanwhile.
                    if sub.resync and self._current(sub):
                        await self._send_sync(sub, snapshot, asked)
        finally:
            self._tasks.pop(channel, None)


class PresenceViews:
    """The presence order of every local subscriber, one :class:`PresenceSub` per
    (peer, channel), and one resync task per channel at most."""

    def __init__(
        self, sync: Sync, local: Local, reassert: Reassert, diff_window: float, order_wait: float
    ) -> None:
        self._sync = sync
        self._local = local
        self._reassert = reassert
        self._diff_window = diff_window
        self._subs: dict[Peer, dict[str, PresenceSub]] = {}
        self._resync_tasks = ResyncTasks(sync, self._subscribers, self._current, self._send_sync)
        self._order_wait = OrderWait(order_wait, self._subscribers, self._want_resync)
        self.resyncs = 0  # fresh syncs sent unasked: a gap, a new epoch, a lagging view
        self.reordered = 0  # events that came ahead of a missing one, passed on once it came

    def channels(self) -> set[str]:
        return {channel for subs in self._subs.values() for channel in subs}

    def hold(self, peer: Peer, channel: str, diff: bool, chunk: int) -> Ticket:
        """Start (or restart) holding ``peer``'s events of ``channel`` until its sync is sent.

        Called before subscribing upstream, so that no event from then on is missed."""
        subs = self._subs.setdefault(peer, {})
        sub = subs.get(channel) or subs.setdefault(channel, PresenceSub(peer, channel))
        sub.flush()
        sub.ahead.clear()  # its sync will cover them
        sub.diff, sub.chunk = diff, chunk
        if sub.pending is None:
            sub.pending = []
        sub.resync = False
        return Ticket(sub, sub.asked)

    async def first_sync(self, ticket: Ticket) -> None:
        """Read the channel and send the held subscriber its sync, then what it held.

        On PresenceError the subscriber stays held, marked for the reaper's next tick."""
        sub = ticket.sub
        try:
            snapshot = await self._sync(sub.channel)
        except PresenceError:
            sub.resync = True
            raise
        await self._send_sync(sub, snapshot, ticket.asked)

    def drop(self, peer: Peer, channel: str) -> None:
        subs = self._subs.get(peer)
        sub = subs.pop(channel, None) if subs is not None else None
        if sub is not None and sub.timer is not None:
            sub.timer.cancel()
        if subs is not None and not subs:
            del self._subs[peer]

    def drop_peer(self, peer: Peer) -> None:
        for channel in list(self._subs.get(peer, ())):
            self.drop(peer, channel)

    def deliver(self, channel: str, message: BusMessage, peers: Collection[Peer]) -> None:
        """Pass one presence event from the bus to the local subscribers of ``channel``."""
        frame: Outgoing | None = None  # encoded once for all subscribers
        held: dict[int, Outgoing] = {}  # the same for events that were waiting: seq -> frame
        for peer in tuple(peers):
            sub = self._sub(peer, channel)
            if sub is not None and message.seq:
                frame = self._accept(sub, message, frame, held)
                continue
            # A seed gateway's event carries no sequence: nothing to order it by.
            frame = frame or client_frame(message)
            peer.send(frame)

    def check(self, channel: str, before: ChannelState) -> None:
        """Resync the subscribers whose view is behind ``before``, the channel's state a whole
        reap tick ago (its events have had that long to arrive), or that still want one."""
        for sub in self._subscribers(channel):
            if sub.resync and self._resync_tasks.running(channel):
                continue
            if sub.resync or (
                sub.pending is None and (sub.epoch != before.epoch or sub.seen < before.version)
            ):
                self._want_resync(sub)

    async def close(self) -> None:
        self._order_wait.close()
        await self._resync_tasks.close()

    # --- the ordering ---------------------------------------------------------------------------

    def _sub(self, peer: Peer, channel: str) -> PresenceSub | None:
        subs = self._subs.get(peer)
        return subs.get(channel) if subs is not None else None

    def _current(self, sub: PresenceSub) -> bool:
        """Whether ``sub`` is still its peer's subscription to its channel."""
        return self._sub(sub.peer, sub.channel) is sub

    def _subscribers(self, channel: str) -> list[PresenceSub]:
        found = []
        for peer in tuple(self._local(channel)):
            sub = self._sub(peer, channel)
            if sub is not None:
                found.append(sub)
        return found

    def _accept(
        self,
        sub: PresenceSub,
        message: BusMessage,
        frame: Outgoing | None = None,
        held: dict[int, Outgoing] | None = None,
    ) -> Outgoing | None:
        """Pass one event to one subscriber in order; returns its frame once encoded, so the
        next subscriber reuses it (``held``: the same for events that were waiting)."""
        if sub.pending is not None:
            if len(sub.pending) >= PENDING_LIMIT:
                sub.pending.clear()
                sub.overflow = True
            sub.pending.append(message)
            return frame
        if message.epoch != sub.epoch:
            if sub.epoch or sub.seen:
                # The store lost its state (Redis came back empty) and numbers from 1 again:
                # re-assert our connections and give this client a fresh sync.
                self._want_resync(sub, message)
                self._reassert(sub.channel)
                return frame
            sub.epoch = message.epoch  # the channel's first event: its epoch begins
        if message.seq <= sub.seen:
            return frame  # already in the client's sync
        if message.seq != sub.seen + 1:
            self._order_wait.hold(sub, message)
            return frame
        sub.seen = message.seq
        if sub.diff:
            sub.batch_event(message, self._diff_window)
        else:
            frame = frame or client_frame(message)
            sub.peer.send(frame)
        if sub.ahead:
            self._pass_held(sub, held if held is not None else {})
        return frame

    def _pass_held(self, sub: PresenceSub, held: dict[int, Outgoing]) -> None:
        """Pass on the events that waited for the one just passed, as far as they follow on."""
        while sub.ahead:
            message = sub.ahead.pop(sub.seen + 1, None)
            if message is None:
                return  # still waiting for another one; the channel's timer runs on
            self.reordered += 1
            sub.seen = message.seq
            if sub.diff:
                sub.batch_event(message, self._diff_window)
                continue
            frame = held.get(message.seq)
            if frame is None:
                frame = held[message.seq] = client_frame(message)
            sub.peer.send(frame)

    def _want_resync(self, sub: PresenceSub, first: BusMessage | None = None) -> None:
        sub.flush()
        # Events held for a missing one are in Redis before the sync is read, so the sync
        # covers them.
        sub.ahead.clear()
        if not sub.resync:
            self.resyncs += 1
            metrics.PRESENCE_RESYNCS.inc()
        if sub.pending is None:
            sub.pending = [] if first is None else [first]
        sub.resync = True
        sub.asked += 1
        self._resync_tasks.start(sub.channel)

    async def _send_sync(self, sub: PresenceSub, snapshot: Snapshot, asked: int) -> None:
        """Send ``snapshot``, read after resync request number ``asked``, then the events held
        for this client that came after its version."""
        version, _, members = snapshot
        channel, peer = sub.channel, sub.peer
        metrics.PRESENCE_SYNCS.inc()
        if sub.chunk and len(members) > sub.chunk:
            chunks = -(-len(members) // sub.chunk)
            for index in range(chunks):
                part = members[index * sub.chunk : (index + 1) * sub.chunk]
                peer.send(sync_frame(channel, part, version, index + 1, chunks))
                await asyncio.sleep(0)  # a big channel does not hold the instance up
        else:
            peer.send(sync_frame(channel, members, version))
        if sub.asked != asked:
            return  # a newer sync was asked for meanwhile; it follows and ends the hold
        sub.resync = False
        sub.seen, sub.epoch = version, snapshot.epoch
        pending, sub.pending = sub.pending or [], None
        for message in pending:
            if sub.pending is not None:
                sub.pending.append(message)
            else:
                self._accept(sub, message)
        if sub.overflow:
            sub.overflow = False
            self._want_resync(sub)
