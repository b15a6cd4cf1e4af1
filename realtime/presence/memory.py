"""Presence in this process only: the embedded mode's store, with the Redis store's semantics.

Per-connection entries with their own expiry, one event per user change numbered by the
channel's version, published in version order (a lock spans each change and its publish).

A channel whose last connection left keeps only its version and epoch, and only while someone
still listens: the reaper names every channel a local subscriber listens to at each tick (at
most a second apart), and an emptied channel no tick has named for ``FORGET_AFTER`` seconds is
forgotten by a sweep that runs while emptied channels are held. So versions stay monotonic for
live subscribers (someone joining again continues the count), and nothing grows with the
channels ever joined. A channel joined again after it
was forgotten starts a new epoch at version 1, as a Redis channel does once its version key
expired; an absent channel reads as version 0 with no epoch, as in Redis.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from realtime.errors import PresenceFull
from realtime.presence.base import ChannelState, Entry, Publish, Snapshot
from realtime.webhooks.events import HookSink, WebhookEvent
from realtime.wire.messages import Member, bus_presence_body, complete_presence, encode

# Seconds an emptied channel is kept once no reap tick names it (ticks are at most 1 s apart).
FORGET_AFTER = 5.0


@dataclass
class _Channel:
    epoch: str
    members: dict[str, Member] = field(default_factory=dict)
    # user id -> connection id -> expiry (monotonic seconds)
    conns: dict[str, dict[str, float]] = field(default_factory=dict)
    # user id -> the user's connections in their leave grace (closed, leave not announced)
    graced: dict[str, set[str]] = field(default_factory=dict)
    version: int = 0
    # While the channel is empty: when a reap last named it (monotonic seconds).
    wanted: float = 0.0


class MemoryPresence:
    def __init__(
        self,
        ttl: int,
        max_members: int = 0,
        forget_after: float | None = None,
        leave_grace: float = 0.0,
        webhooks: HookSink | None = None,
    ) -> None:
        self._ttl = ttl
        self._grace = leave_grace
        self._max_members = max_members
        self._forget_after = FORGET_AFTER if forget_after is None else forget_after
        self._channels: dict[str, _Channel] = {}
        self._empty: set[str] = set()  # channels in _channels with no connection
        self._sweeper: asyncio.TimerHandle | None = None
        self._created = 0  # channels made so far: each gets its own epoch
        self._epoch = uuid.uuid4().hex
        self._lock = asyncio.Lock()
        self._publish: Publish | None = None
        # Embedded mode delivers webhooks from this process: each change is told here once.
        self._hooks = webhooks
        # (channel, connection) -> until when a refresh must not re-add it: it left or closed,
        # and a refresh's snapshot of the entries may predate that. Marked for 2 TTLs (longer
        # than a refresh stays on its way), oldest first (each mark lasts as long).
        self._left: dict[tuple[str, str], float] = {}

    def _mark_left(self, channel: str, conn: str) -> None:
        now = time.monotonic()
        for key, until in list(self._left.items()):
            if until > now:
                break
            del self._left[key]
        self._left.pop((channel, conn), None)
        self._left[channel, conn] = now + 2 * self._ttl

    async def start(self, publish: Publish) -> None:
        self._publish = publish

    def __len__(self) -> int:
        """Channels held, the emptied ones not forgotten yet included."""
        return len(self._channels)

    def _channel(self, channel: str) -> _Channel:
        state = self._channels.get(channel)
        if state is None:
            self._created += 1
            state = self._channels[channel] = _Channel(f"{self._epoch}.{self._created}")
        else:
            self._empty.discard(channel)
        return state

    def _sweep(self) -> None:
        """Forget the emptied channels no reap named lately. Outside the lock: no change in
        progress holds an emptied channel it has not touched within ``forget_after``."""
        self._sweeper = None
        cutoff = time.monotonic() - self._forget_after
        oldest = None
        for channel in list(self._empty):
            wanted = self._channels[channel].wanted
            if wanted <= cutoff:
                del self._channels[channel]
                self._empty.discard(channel)
            elif oldest is None or wanted < oldest:
                oldest = wanted
        if oldest is not None:
            self._schedule_sweep(oldest - cutoff)

    def _schedule_sweep(self, delay: float | None = None) -> None:
        if self._sweeper is None:
            loop = asyncio.get_running_loop()
            delay = self._forget_after if delay is None else delay
            self._sweeper = loop.call_later(delay, self._sweep)

    async def _emit(self, kind: str, channel: str, state: _Channel, member: Member) -> None:
        state.version += 1
        if self._publish is not None:
            body = bus_presence_body(channel, member)
            data = complete_presence(kind, body, state.version, state.epoch)
            await self._publish(channel, data)
        if self._hooks is not None and kind != "presence_update":
            self._tell_hooks(kind, channel, state, member.user_id)

    def _tell_hooks(self, kind: str, channel: str, state: _Channel, user_id: str) -> None:
        # As in the Redis scripts: occupied and vacated follow the members.
        assert self._hooks is not None
        now = int(time.time() * 1000)
        names = ["member_added"] if kind == "presence_join" else ["member_removed"]
        if kind == "presence_join" and len(state.members) == 1:
            names.insert(0, "channel_occupied")
        if kind == "presence_leave" and not state.members:
            names.append("channel_vacated")
        for name in names:
            user = None if name.startswith("channel_") else user_id
            self._hooks(WebhookEvent(name, channel, now, user_id=user))

    async def join(self, channel: str, conn: str, member: Member) -> str:
        async with self._lock:
            state = self._channel(channel)
            conns = state.conns.get(member.user_id)
            if (
                not conns
                and self._max_members
                and member.user_id not in state.members
                and len(state.members) >= self._max_members
            ):
                raise PresenceFull(f"channel {channel!r} has {self._max_members} members already")
            conns = state.conns.setdefault(member.user_id, {})
            graced = state.graced.get(member.user_id)
            # Every entry of the user is in its leave grace: the user is back before the leave
            # was announced. Observers saw nothing go, so they see nothing come: only a new
            # meta is news (compared as the Redis store does: the same JSON bytes).
            back = conn not in conns and graced is not None and len(graced) == len(conns)
            kind = "presence_update" if conns else "presence_join"
            # With a grace, a new connection of a present user (back, or the old connection's
            # close not known yet: a reconnect races it) with the same meta is no change.
            again = self._grace > 0 and conn not in conns and bool(conns)
            if back:
                assert graced is not None
                for gone in graced:
                    del conns[gone]
                del state.graced[member.user_id]
            conns[conn] = time.monotonic() + self._ttl
            self._left.pop((channel, conn), None)  # joined again after a presence_leave
            stored = state.members.get(member.user_id)
            if again and stored is not None and encode(stored.meta) == encode(member.meta):
                return ""
            if back and stored is None:
                kind = "presence_join"
            state.members[member.user_id] = member
            await self._emit(kind, channel, state, member)
            return kind

    async def leave(self, channel: str, conn: str, user_id: str) -> bool:
        async with self._lock:
            self._mark_left(channel, conn)
            state = self._channels.get(channel)
            conns = state.conns.get(user_id) if state is not None else None
            if state is not None and conns is not None and conn in conns:
                graced = state.graced.get(user_id, set())
                if len(conns) - 1 == len(graced - {conn}) > 0:
                    # A deliberate leave is immediate: the user's connections still in their
                    # leave grace (closed earlier) do not hold the member.
                    for gone in graced:
                        conns.pop(gone, None)
                    state.graced.pop(user_id, None)
            return await self._drop(channel, user_id, conn)

    async def linger(self, channel: str, conn: str, user_id: str) -> bool:
        async with self._lock:
            self._mark_left(channel, conn)
            state = self._channels.get(channel)
            conns = state.conns.get(user_id) if state is not None else None
            if state is None or conns is None or conn not in conns:
                return False
            graced = state.graced.get(user_id, set())
            if conn in graced:
                return False
            if len(conns) > len(graced) + 1:
                # Another live connection holds the user: this one goes as without a grace.
                await self._drop(channel, user_id, conn)
                return False
            state.graced.setdefault(user_id, set()).add(conn)
            conns[conn] = time.monotonic() + self._grace
            return True

    async def _drop(self, channel: str, user_id: str, conn: str) -> bool:
        state = self._channels.get(channel)
        conns = state.conns.get(user_id) if state is not None else None
        if state is None or conns is None or conns.pop(conn, None) is None:
            return False
        graced = state.graced.get(user_id)
        if graced is not None:
            graced.discard(conn)
            if not graced:
                del state.graced[user_id]
        if conns:
            return False
        del state.conns[user_id]
        state.members.pop(user_id, None)
        await self._emit("presence_leave", channel, state, Member(user_id))
        if not state.conns:
            state.wanted = time.monotonic()
            self._empty.add(channel)
            self._schedule_sweep()
        return True

    async def refresh(self, entries: Sequence[Entry]) -> int:
        added = 0
        async with self._lock:
            expires = time.monotonic() + self._ttl
            for channel, conn, member in entries:
                known = self._channels.get(channel)
                if known is not None and conn in known.graced.get(member.user_id, ()):
                    continue  # its connection closed while this refresh was on its way
                if (channel, conn) in self._left and (
                    known is None or conn not in known.conns.get(member.user_id, ())
                ):
                    continue  # it left after this refresh's snapshot: nothing holds it now
                state = self._channel(channel)
                conns = state.conns.setdefault(member.user_id, {})
                if conn not in conns:
                    added += 1
                    if not conns:
                        state.members[member.user_id] = member
                        conns[conn] = expires
                        await self._emit("presence_join", channel, state, member)
                conns[conn] = expires
        return added

    async def reap(self, channels: Collection[str]) -> dict[str, ChannelState]:
        now = time.monotonic()
        states = {}
        async with self._lock:
            for channel in channels:
                state = self._channels.get(channel)
                if state is None:
                    states[channel] = ChannelState(0, "")
                    continue
                expired = [
                    (user_id, conn)
                    for user_id, conns in state.conns.items()
                    for conn, expires in conns.items()
                    if expires <= now
                ]
                for user_id, conn in expired:
                    await self._drop(channel, user_id, conn)
                if not state.conns:
                    state.wanted = now  # a local subscriber still listens: keep its version
                states[channel] = ChannelState(state.version, state.epoch)
        return states

    async def sync(self, channel: str) -> Snapshot:
        version, epoch = (await self.reap([channel]))[channel]
        state = self._channels.get(channel)
        members = list(state.members.values()) if state is not None else []
        return Snapshot(version, epoch, members)

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        self._channels.clear()
        self._empty.clear()
