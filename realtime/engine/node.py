"""The core: a client message in -> broker or presence; a bus message in -> the hub.

The node knows no WebSocket: it talks to peers (``hub.Peer``), brokers and a presence store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import msgspec

from realtime.brokers.base import Broker, PipelinedBroker
from realtime.engine.hub import Hub, Peer
from realtime.errors import BrokerError, FrameError, PresenceError, PresenceFull
from realtime.presence.base import ChannelState, Entry, PresenceStore, Snapshot
from realtime.wire.frames import Outgoing
from realtime.wire.messages import (
    BROADCAST,
    PRESENCE,
    PRESENCE_TYPES,
    AnyClientMessage,
    Broadcast,
    BusMessage,
    Kind,
    Member,
    Meta,
    PresenceJoin,
    PresenceLeave,
    PresenceUpdate,
    Subscribe,
    Unsubscribe,
    bus_broadcast,
    client_frame,
    decode_bus,
    diff_frame,
    encode,
    sync_frame,
)

log = logging.getLogger("realtime.engine.node")


PENDING_LIMIT = 10_000  # events buffered for one subscriber awaiting its sync


@dataclass(eq=False)
class PresenceSub:
    """One connection's presence subscription to one channel.

    ``seen`` is the last version this client's view is exact at. While ``pending`` is a list,
    events are held there until the client's ``presence_sync`` is sent; then those after its
    version follow. ``resync`` asks the channel's resync task for a fresh sync.
    """

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


@dataclass(eq=False)
class PeerState:
    """What the node remembers of one connection, so closing it undoes everything."""

    conn: str = ""
    listening: dict[str, set[Kind]] = field(default_factory=dict)
    joined: dict[str, Member] = field(default_factory=dict)
    presence: dict[str, PresenceSub] = field(default_factory=dict)


class Node:
    def __init__(
        self,
        broker: Broker,
        presence_bus: Broker,
        store: PresenceStore,
        presence_ttl: int,
        *,
        max_meta_bytes: int = 2048,
        diff_window: float = 0.1,
    ) -> None:
        self.brokers: dict[Kind, Broker] = {BROADCAST: broker, PRESENCE: presence_bus}
        self._pipelined = broker if isinstance(broker, PipelinedBroker) else None
        self.hub = Hub(self.brokers)
        self.store = store
        self._ttl = presence_ttl
        self._max_meta = max_meta_bytes
        self._diff_window = diff_window
        # How often expired members are looked for: a killed instance's users are announced
        # gone at most this long after their expiry.
        self.reap_interval = max(0.2, min(1.0, presence_ttl / 4))
        self._peers: dict[Peer, PeerState] = {}
        self._instance = uuid.uuid4().hex[:12]
        self._conns = 0
        self._channel_states: dict[str, ChannelState] = {}
        self._resyncs: dict[str, asyncio.Task[None]] = {}
        self._reasserts: dict[str, asyncio.Task[None]] = {}
        self._tasks: list[asyncio.Task[None]] = []

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        started: set[int] = set()
        for broker in self.brokers.values():
            if id(broker) not in started:
                started.add(id(broker))
                await broker.start(self.deliver)
        await self.store.start(self._publish_presence)
        self._tasks = [
            asyncio.create_task(self._loop(self._refresh, self._ttl / 3), name="presence-refresh"),
            asyncio.create_task(self._loop(self._reap, self.reap_interval), name="presence-reap"),
        ]

    async def close(self) -> None:
        for task in [*self._tasks, *self._resyncs.values(), *self._reasserts.values()]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        self._resyncs.clear()
        self._reasserts.clear()
        closed: set[int] = set()
        for broker in self.brokers.values():
            if id(broker) not in closed:
                closed.add(id(broker))
                await broker.close()
        await self.store.close()

    @property
    def ready(self) -> bool:
        return all(broker.ready for broker in self.brokers.values())

    @property
    def connections(self) -> int:
        return len(self._peers)

    # --- peers ----------------------------------------------------------------------------------

    def connect(self, peer: Peer) -> None:
        self._conns += 1
        self._peers[peer] = PeerState(conn=f"{self._instance}.{self._conns}")

    async def disconnect(self, peer: Peer) -> None:
        state = self._peers.pop(peer, None)
        if state is None:
            return
        for channel in list(state.joined):
            try:
                await self._leave(peer, state, channel)
            except FrameError as exc:
                log.warning("presence leave on close failed: %s", exc, extra={"channel": channel})
        for channel in list(state.presence):
            self._drop_sub(state, channel)
        for channel, kinds in state.listening.items():
            for kind in kinds:
                with contextlib.suppress(BrokerError):
                    await self.hub.remove(peer, kind, channel)

    async def handle(self, peer: Peer, message: AnyClientMessage) -> asyncio.Future[None] | None:
        """Act on one decoded client frame; raises FrameError for the client to see.

        A broadcast on a broker that pipelines publishes is not waited for: the returned
        future settles when the MQ accepted it (or fails with BrokerError)."""
        state = self._peers[peer]
        match message:
            case Broadcast(channel=channel, event=event, payload=payload):
                if self._pipelined is not None:
                    data = bus_broadcast(channel, event, payload, peer.user_id)
                    return self._pipelined.publish_later(BROADCAST, channel, data)
                await self.publish(channel, event, payload, peer.user_id)
            case Subscribe(channel=channel, listen=listen):
                await self._subscribe(peer, state, message, set(listen))
            case Unsubscribe(channel=channel):
                for kind in state.listening.pop(channel, set()):
                    await self.hub.remove(peer, kind, channel)
                self._drop_sub(state, channel)
            case (
                PresenceJoin(channel=channel, payload=meta)
                | PresenceUpdate(channel=channel, payload=meta)
            ):
                await self._join(peer, state, channel, meta)
            case PresenceLeave(channel=channel):
                await self._leave(peer, state, channel)
        return None

    # --- broadcast ------------------------------------------------------------------------------

    async def publish(
        self, channel: str, event: str, payload: msgspec.Raw, user_id: str = ""
    ) -> None:
        """Publish a broadcast to every instance."""
        try:
            await self.brokers[BROADCAST].publish(
                BROADCAST, channel, bus_broadcast(channel, event, payload, user_id)
            )
        except BrokerError as exc:
            raise FrameError("publish_failed", str(exc), channel) from exc

    async def deliver(self, kind: Kind, channel: str, data: bytes) -> None:
        """A message from the bus: encode its client frame once, queue it to every local peer."""
        peers = self.hub.local(kind, channel)
        if not peers:
            return
        try:
            message = decode_bus(data)
        except msgspec.MsgspecError as exc:
            log.warning("dropped undecodable bus message: %s", exc, extra={"channel": channel})
            return
        if (message.type in PRESENCE_TYPES) != (kind == PRESENCE) or message.channel_id != channel:
            log.warning("dropped bus message of type %r on %s %r", message.type, kind, channel)
            return
        if kind == PRESENCE:
            self._deliver_presence(channel, message, peers)
            return
        frame = client_frame(message)
        for peer in tuple(peers):
            peer.send(frame)

    # --- subscriptions --------------------------------------------------------------------------

    async def _subscribe(
        self, peer: Peer, state: PeerState, message: Subscribe, kinds: set[Kind]
    ) -> None:
        channel = message.channel
        sub = None
        if PRESENCE in kinds:
            # Hold this client's events from before upstream is subscribed until its sync is
            # sent; those after the sync's version then follow, none missing, none twice.
            sub = state.presence.get(channel) or state.presence.setdefault(channel, PresenceSub())
            self._flush_batch(peer, channel, sub)
            sub.diff, sub.chunk = message.presence_diff, message.presence_chunk
            if sub.pending is None:
                sub.pending = []
            sub.resync = False
            asked = sub.asked
        listening = state.listening.setdefault(channel, set())
        try:
            for kind in kinds - listening:
                await self.hub.add(peer, kind, channel)
                listening.add(kind)
            for kind in listening - kinds:
                await self.hub.remove(peer, kind, channel)
                listening.discard(kind)
        except BrokerError as exc:
            raise FrameError("subscribe_failed", str(exc), channel) from exc
        finally:
            if PRESENCE not in listening:
                self._drop_sub(state, channel)
            if not listening:
                del state.listening[channel]
        if sub is None:
            return
        try:
            snapshot = await self.store.sync(channel)
        except PresenceError as exc:
            sub.resync = True  # the reaper's tick retries; the client gets its sync then
            raise FrameError("presence_unavailable", str(exc), channel) from exc
        await self._send_sync(peer, channel, sub, snapshot, asked)

    def _drop_sub(self, state: PeerState, channel: str) -> None:
        sub = state.presence.pop(channel, None)
        if sub is not None and sub.timer is not None:
            sub.timer.cancel()

    # --- presence -------------------------------------------------------------------------------

    async def _join(self, peer: Peer, state: PeerState, channel: str, meta: Meta) -> None:
        size = len(encode(meta))
        if size > self._max_meta:
            raise FrameError(
                "meta_too_large",
                f"presence meta is {size} bytes, more than the {self._max_meta} allowed",
                channel,
            )
        member = Member(peer.user_id, meta, int(time.time()))
        try:
            await self.store.join(channel, state.conn, member)
        except PresenceFull as exc:
            raise FrameError("presence_full", str(exc), channel) from exc
        except PresenceError as exc:
            raise FrameError("presence_unavailable", str(exc), channel) from exc
        except BrokerError as exc:
            raise FrameError("publish_failed", str(exc), channel) from exc
        state.joined[channel] = member

    async def _leave(self, peer: Peer, state: PeerState, channel: str) -> None:
        if state.joined.pop(channel, None) is None:
            return
        try:
            await self.store.leave(channel, state.conn, peer.user_id)
        except PresenceError as exc:
            # The entry expires by itself and the reaper announces the leave then.
            raise FrameError("presence_unavailable", str(exc), channel) from exc
        except BrokerError as exc:
            raise FrameError("publish_failed", str(exc), channel) from exc

    async def _publish_presence(self, channel: str, data: bytes) -> None:
        # For stores that do not publish by themselves (memory).
        await self.brokers[PRESENCE].publish(PRESENCE, channel, data)

    def _deliver_presence(self, channel: str, message: BusMessage, peers: set[Peer]) -> None:
        frame: Outgoing | None = None
        for peer in tuple(peers):
            state = self._peers.get(peer)
            sub = state.presence.get(channel) if state is not None else None
            if sub is not None and message.seq:
                frame = self._accept(peer, channel, sub, message, frame)
                continue
            # A seed gateway's event carries no sequence: nothing to order it by.
            frame = frame or client_frame(message)
            peer.send(frame)

    def _accept(
        self,
        peer: Peer,
        channel: str,
        sub: PresenceSub,
        message: BusMessage,
        frame: Outgoing | None = None,
    ) -> Outgoing | None:
        """Pass one event to one subscriber in order; returns its frame once encoded, so
        the next subscriber reuses it."""
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
                self._want_resync(peer, channel, sub, message)
                self._reassert(channel)
                return frame
            sub.epoch = message.epoch  # the channel's first event: its epoch begins
        if message.seq <= sub.seen:
            return frame  # already in the client's sync
        if message.seq != sub.seen + 1:
            # A gap (events lost while the bus reconnected): this view is no longer exact.
            self._want_resync(peer, channel, sub, message)
            return frame
        sub.seen = message.seq
        if sub.diff:
            sub.batch.append(message)
            if self._diff_window <= 0:
                self._flush_batch(peer, channel, sub)
            elif sub.timer is None:
                sub.timer = asyncio.get_running_loop().call_later(
                    self._diff_window, self._flush_batch, peer, channel, sub
                )
        else:
            frame = frame or client_frame(message)
            peer.send(frame)
        return frame

    def _flush_batch(self, peer: Peer, channel: str, sub: PresenceSub) -> None:
        if sub.timer is not None:
            sub.timer.cancel()
            sub.timer = None
        batch, sub.batch = sub.batch, []
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
        peer.send(diff_frame(channel, joins, leaves, batch[0].seq, batch[-1].seq))

    def _want_resync(
        self, peer: Peer, channel: str, sub: PresenceSub, first: BusMessage | None = None
    ) -> None:
        self._flush_batch(peer, channel, sub)
        if sub.pending is None:
            sub.pending = [] if first is None else [first]
        sub.resync = True
        sub.asked += 1
        if channel not in self._resyncs:
            self._resyncs[channel] = asyncio.create_task(
                self._resync(channel), name="presence-resync"
            )

    async def _resync(self, channel: str) -> None:
        """Send a fresh sync to every local subscriber of ``channel`` that asked for one."""
        try:
            while True:
                waiting = [(p, s, s.asked) for p, s in self._subs(channel, lambda s: s.resync)]
                if not waiting:
                    return
                try:
                    snapshot = await self.store.sync(channel)
                except PresenceError as exc:
                    log.warning("presence resync failed: %s", exc, extra={"channel": channel})
                    return  # the reaper's tick tries again
                for peer, sub, asked in waiting:
                    state = self._peers.get(peer)
                    if sub.resync and state is not None and state.presence.get(channel) is sub:
                        await self._send_sync(peer, channel, sub, snapshot, asked)
        finally:
            self._resyncs.pop(channel, None)

    async def _send_sync(
        self, peer: Peer, channel: str, sub: PresenceSub, snapshot: Snapshot, asked: int
    ) -> None:
        """Send ``snapshot``, read after resync request number ``asked``, then the events held
        for this client that came after its version."""
        version, _, members = snapshot
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
                self._accept(peer, channel, sub, message)
        if sub.overflow:
            sub.overflow = False
            self._want_resync(peer, channel, sub)

    def _subs(
        self, channel: str, want: Callable[[PresenceSub], bool]
    ) -> list[tuple[Peer, PresenceSub]]:
        found = []
        for peer in tuple(self.hub.local(PRESENCE, channel)):
            state = self._peers.get(peer)
            sub = state.presence.get(channel) if state is not None else None
            if sub is not None and want(sub):
                found.append((peer, sub))
        return found

    # --- background: refresh and reap -----------------------------------------------------------

    async def _loop(self, step: Callable[[], Awaitable[None]], interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await step()
            except (PresenceError, BrokerError) as exc:
                log.warning("presence %s failed: %s", step.__name__.strip("_"), exc)
            except Exception:
                log.exception("presence %s failed", step.__name__.strip("_"))

    def _entries(self, channel: str | None = None) -> list[Entry]:
        return [
            Entry(ch, state.conn, member)
            for state in self._peers.values()
            for ch, member in state.joined.items()
            if channel is None or ch == channel
        ]

    async def _refresh(self) -> None:
        # Every TTL/3, well inside the TTL: a live member never expires, and entries the store
        # lost are re-added (with their join events).
        await self.store.refresh(self._entries())

    def _reassert(self, channel: str) -> None:
        if channel not in self._reasserts and self._entries(channel):
            self._reasserts[channel] = asyncio.create_task(
                self._reassert_now(channel), name="presence-reassert"
            )

    async def _reassert_now(self, channel: str) -> None:
        try:
            added = await self.store.refresh(self._entries(channel))
            if added:
                log.info("re-asserted %d presence entries", added, extra={"channel": channel})
        except PresenceError as exc:
            log.warning("presence re-assert failed: %s", exc, extra={"channel": channel})
        finally:
            self._reasserts.pop(channel, None)

    async def _reap(self) -> None:
        """Reap the channels this instance serves and check its subscribers' views."""
        channels = {ch for state in self._peers.values() for ch in (*state.joined, *state.presence)}
        states = await self.store.reap(channels) if channels else {}
        for channel in set(self._channel_states) - channels:
            del self._channel_states[channel]
        for channel, now in states.items():
            before = self._channel_states.get(channel)
            self._channel_states[channel] = now
            if now.version == 0 or (before is not None and before.epoch != now.epoch):
                # No version while we hold live entries, or a new epoch: the store may have
                # lost its state (Redis came back empty). Re-assert ours at once.
                self._reassert(channel)
            if before is None or before.epoch != now.epoch:
                continue  # events in flight settle it; the next tick looks again
            # Events up to the previous tick's version have had a whole tick to arrive.
            for peer, sub in self._subs(channel, lambda sub: True):
                if sub.resync and channel in self._resyncs:
                    continue
                if sub.resync or (
                    sub.pending is None and (sub.epoch != before.epoch or sub.seen < before.version)
                ):
                    self._want_resync(peer, channel, sub)
