"""The core: a client message in -> broker or presence; a bus message in -> the hub.

The node knows no WebSocket: it talks to peers (``hub.Peer``), brokers and a presence store.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Iterator

import msgspec

from realtime import metrics
from realtime.activity import ARRIVALS
from realtime.apikeys import compile_patterns
from realtime.auth.grants import Grants
from realtime.brokers.base import Broker, PipelinedBroker
from realtime.engine.admission import Admission
from realtime.engine.control import Control, Reply, Request
from realtime.engine.failures import (
    PRESENCE_UNAVAILABLE,
    PUBLISH_FAILED,
    SUBSCRIBE_FAILED,
    backend_failure,
)
from realtime.engine.history_path import NO_HISTORY, HistoryPath
from realtime.engine.hub import Hub, Peer
from realtime.engine.lifecycle import Backends
from realtime.engine.liveness import Liveness
from realtime.engine.peers import Peers, PeerState
from realtime.engine.permissions import Permissions
from realtime.engine.presence import PresenceViews
from realtime.engine.upkeep import Upkeep
from realtime.errors import BrokerError, FrameError, PresenceError, PresenceFull
from realtime.history.base import History, Position
from realtime.history.idempotency import IdempotencyStore
from realtime.presence.base import PresenceStore
from realtime.webhooks import Webhooks
from realtime.wire.messages import (
    BROADCAST,
    PRESENCE,
    PRESENCE_TYPES,
    RESERVED_PREFIX,
    AnyClientMessage,
    Broadcast,
    BusMessage,
    HistoryRequest,
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
    error_frame,
)

log = logging.getLogger("realtime.engine.node")


@contextlib.contextmanager
def refusing(channel: str) -> Iterator[None]:
    """Turn a presence store's errors into the error frame the client sees."""
    try:
        yield
    except PresenceFull as exc:
        # Our own message, naming only the channel's cap: safe to pass on.
        raise FrameError("presence_full", str(exc), channel) from exc
    except PresenceError as exc:
        raise backend_failure("presence_unavailable", PRESENCE_UNAVAILABLE, channel, exc) from exc
    except BrokerError as exc:
        raise backend_failure("publish_failed", PUBLISH_FAILED, channel, exc) from exc


def _addressed(kind: Kind, channel: str, data: bytes) -> BusMessage | None:
    """The bus message in ``data``; None (logged) when it does not decode or is not one of
    ``kind`` on ``channel``."""
    try:
        message = decode_bus(data)
    except msgspec.MsgspecError as exc:
        log.warning("dropped undecodable bus message: %s", exc, extra={"channel": channel})
        return None
    if (message.type in PRESENCE_TYPES) != (kind == PRESENCE) or message.channel_id != channel:
        log.warning("dropped bus message of type %r on %s %r", message.type, kind, channel)
        return None
    return message


class Membership:
    """Each connection's entries in the presence store, joined (or updated) and left.

    With a leave grace, a closed connection's entries linger in the store instead of leaving:
    the user's leave is announced by a reaper at the end of the grace unless the user joins
    again first. A ``presence_leave`` frame is a deliberate leave and stays immediate.
    """

    def __init__(self, store: PresenceStore, admission: Admission, leave_grace: float = 0) -> None:
        self._store = store
        self._admission = admission
        self._grace = leave_grace
        # channel -> when this instance's last lingering entry there ends (monotonic seconds):
        # until a little after, this instance serves (so reaps) the channel, even when none of
        # its clients is in it any more, so the leave comes on time with no observer here.
        self._lingering: dict[str, float] = {}

    async def join(self, peer: Peer, state: PeerState, channel: str, meta: Meta) -> None:
        self._admission.meta(peer, channel, meta)
        member = Member(peer.user_id, meta, int(time.time()))
        with refusing(channel):
            await self._store.join(channel, state.conn, member)
        if channel not in state.joined:  # an update is no new entry
            metrics.PRESENCE_MEMBERS.inc()
        state.joined[channel] = member

    async def leave(self, peer: Peer, state: PeerState, channel: str) -> None:
        if state.joined.pop(channel, None) is None:
            return
        metrics.PRESENCE_MEMBERS.dec()
        # On PresenceError the entry expires by itself and the reaper announces the leave then.
        with refusing(channel):
            await self._store.leave(channel, state.conn, peer.user_id)

    async def closed(self, peer: Peer, state: PeerState, channel: str) -> None:
        """The connection closed: its entry leaves now (no grace) or lingers through it."""
        if self._grace <= 0:
            await self.leave(peer, state, channel)
            return
        if state.joined.pop(channel, None) is None:
            return
        metrics.PRESENCE_MEMBERS.dec()  # lingering is no longer this connection's entry
        # On PresenceError the entry expires by itself (TTL) and the reaper announces the leave.
        with refusing(channel):
            if await self._store.linger(channel, state.conn, peer.user_id):
                self._lingering[channel] = time.monotonic() + self._grace

    def lingering(self, margin: float) -> set[str]:
        """Channels where entries this instance let linger end less than ``margin`` ago."""
        if not self._lingering:
            return set()
        now = time.monotonic()
        for channel, until in list(self._lingering.items()):
            if until + margin < now:
                del self._lingering[channel]
        return set(self._lingering)


class Node:
    def __init__(
        self,
        broker: Broker,
        presence_bus: Broker,
        store: PresenceStore,
        presence_ttl: int,
        *,
        max_meta_bytes: int,
        diff_window: float,
        order_wait: float,
        start_timeout: float,
        max_message_bytes: int,
        permissions: Permissions | None = None,
        probe_interval: float = 0.0,
        probe_timeout: float = 2.0,
        leave_grace: float = 0,
        history: History | None = None,
        control_timeout: float = 1.0,
        webhooks: Webhooks | None = None,
        idempotency: IdempotencyStore | None = None,
    ) -> None:
        self.start_timeout = start_timeout
        self.brokers: dict[Kind, Broker] = {BROADCAST: broker, PRESENCE: presence_bus}
        self._pipelined = broker if isinstance(broker, PipelinedBroker) else None
        self.hub = Hub(self.brokers)
        self.store = store
        self._backends = Backends(self.brokers, store)
        self.liveness = Liveness(self.brokers, store, probe_interval, probe_timeout)
        self.control = Control(broker, self._control, control_timeout)
        self.permissions = permissions or Permissions()
        self._admission = Admission(self.permissions, max_message_bytes, max_meta_bytes)
        self._peers = Peers()
        self._members = Membership(store, self._admission, leave_grace)
        watchers = functools.partial(self.hub.local, PRESENCE)
        self._views = PresenceViews(store.sync, watchers, self._reassert, diff_window, order_wait)
        self._upkeep = Upkeep(
            store, presence_ttl, self._peers.entries, self._served, self._views.check
        )
        self.history = history
        # Its counters (delivered, rejected, failures on .poster; dropped) are for /metrics.
        self.webhooks = webhooks
        # Every step that differs on a history channel (HISTORY_CHANNELS); None: history off.
        self._history = HistoryPath(history, self.hub) if history is not None else None
        # POST /api/event's keys; here so they close with the other backends.
        self.idempotency = idempotency

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the brokers and the presence store, each within ``start_timeout`` seconds; raises
        :class:`StartError` (one line, for the log) when one fails or takes longer. A plugin
        whose first connect retries forever would otherwise hold the gateway's start for
        ever."""
        await self._backends.start(self.deliver, self._publish_presence, self.start_timeout)
        if self._history is not None:
            await self._history.start()
        if self.webhooks is not None:
            await self.webhooks.start()
        self._upkeep.start()
        self.liveness.start()
        await self.control.start()

    async def close(self) -> None:
        await self.control.close()
        await self.liveness.close()
        await self._upkeep.close()
        if self.webhooks is not None:
            await self.webhooks.close()
        await self._views.close()
        if self._history is not None:
            await self._history.stop_ordering()
        await self._backends.close()
        if self._history is not None:
            await self._history.close()
        if self.idempotency is not None:
            await self.idempotency.close()
        await self.permissions.close()

    @property
    def connections(self) -> int:
        return len(self._peers)

    @property
    def presence_resyncs(self) -> int:
        """Fresh ``presence_sync`` frames sent unasked (a seq gap, a new epoch, a lagging
        view): each means a client's view had to be rebuilt whole."""
        return self._views.resyncs

    @property
    def presence_reordered(self) -> int:
        """Presence events that arrived ahead of an earlier one and were put back in order."""
        return self._views.reordered

    def holdings(self, peer: Peer) -> tuple[dict[str, set[Kind]], dict[str, Member]]:
        """The channels ``peer`` listens to and is present in (read-only: for quotas)."""
        state = self._peers[peer]
        return state.listening, state.joined

    # --- peers ----------------------------------------------------------------------------------

    def connect(self, peer: Peer, grants: Grants | None = None) -> None:
        self._peers.add(peer, grants)

    def conn_id(self, peer: Peer) -> str:
        """``<instance>.<n>``: the connection's id across instances (as in the presence store),
        for log lines."""
        return self._peers[peer].conn

    def regrant(self, peer: Peer, grants: Grants | None) -> None:
        """A refreshed token's grants apply to the connection's next actions."""
        state = self._peers.get(peer)
        if state is not None:
            state.grants = grants

    async def disconnect(self, peer: Peer) -> None:
        state = self._peers.pop(peer, None)
        if state is None:
            return
        self._views.drop_peer(peer)
        if self._history is not None:
            self._history.drop_peer(peer, list(state.listening))
        for channel in list(state.joined):
            try:
                await self._members.closed(peer, state, channel)
            except FrameError as exc:
                log.warning("presence leave on close failed: %s", exc, extra={"channel": channel})
        for channel, kinds in state.listening.items():
            for kind in kinds:
                with contextlib.suppress(BrokerError):
                    await self._unlisten(peer, kind, channel)

    async def handle(
        self, peer: Peer, message: AnyClientMessage
    ) -> asyncio.Future[Position | None] | asyncio.Future[None] | None:
        """Act on one decoded client frame; raises FrameError for the client to see.

        A broadcast on a broker that pipelines publishes is not waited for: the returned
        future settles when the MQ accepted it (or fails with BrokerError). One on a history
        channel is stored first: its future is done, with the position it got."""
        state = self._peers[peer]
        await self._admission.permit(peer, state.grants, message)
        match message:
            case Broadcast(channel=channel, event=event, payload=payload):
                if self._history is not None and self._history.keeps(channel):
                    stored: asyncio.Future[Position | None] = asyncio.Future()
                    stored.set_result(await self.publish(channel, event, payload, peer.user_id))
                    return stored
                if self._pipelined is not None:
                    data = bus_broadcast(channel, event, payload, peer.user_id)
                    data = self._admission.sized(data, channel)
                    return self._pipelined.publish_later(BROADCAST, channel, data)
                await self.publish(channel, event, payload, peer.user_id)
            case Subscribe(channel=channel, listen=listen):
                await self._subscribe(peer, state, message, set(listen))
            case Unsubscribe(channel=channel):
                for kind in state.listening.pop(channel, set()):
                    await self._unlisten(peer, kind, channel)
                self._views.drop(peer, channel)
                if self._history is not None:
                    self._history.drop(peer, channel)
            case HistoryRequest(channel=channel):
                if self._history is None:
                    raise FrameError("no_history", NO_HISTORY, channel)
                await self._history.page(peer, message)
            case (
                PresenceJoin(channel=channel, payload=meta)
                | PresenceUpdate(channel=channel, payload=meta)
            ):
                await self._members.join(peer, state, channel, meta)
            case PresenceLeave(channel=channel):
                await self._members.leave(peer, state, channel)
        return None

    # --- broadcast ------------------------------------------------------------------------------

    async def publish(
        self, channel: str, event: str, payload: msgspec.Raw, user_id: str = ""
    ) -> Position | None:
        """Publish a broadcast to every instance; FrameError ``message_too_large`` when its bus
        message would exceed what brokers promise to carry. On a history channel it is stored
        first and its position returned: once this returns, it is in history."""
        data = self._admission.sized(bus_broadcast(channel, event, payload, user_id), channel)
        position = None
        if self._history is not None and self._history.keeps(channel):
            position, data = await self._history.store(channel, data)
        started = time.perf_counter()
        # Its broadcast comes back through the broker: a pending write pass may wait for it.
        ARRIVALS.publishing += 1
        try:
            await self.brokers[BROADCAST].publish(BROADCAST, channel, data)
        except BrokerError as exc:
            metrics.PUBLISH_ERRORS[BROADCAST].inc()
            if position is None or self._history is None:
                raise backend_failure("publish_failed", PUBLISH_FAILED, channel, exc) from exc
            self._history.not_carried(channel, position, exc)
        else:
            metrics.PUBLISH_LATENCY.observe(time.perf_counter() - started)
        finally:
            ARRIVALS.publishing -= 1
        return position

    async def deliver(self, kind: Kind, channel: str, data: bytes) -> None:
        """A message from the bus: encode its client frame once, queue it to every local peer."""
        if channel.startswith(RESERVED_PREFIX):
            # Never a client's: clients may not use them.
            if kind != BROADCAST or not self.control.deliver(channel, data):
                self.liveness.deliver(kind, channel, data)
            return
        peers = self.hub.local(kind, channel)
        if not peers:
            return
        message = _addressed(kind, channel, data)
        if message is None:
            return
        # One bump per message and one per fan-out, whatever the number of recipients.
        metrics.IN[kind].inc()
        metrics.OUT[kind].inc(len(peers))
        if kind == PRESENCE:
            self._views.deliver(channel, message, peers)
            return
        metrics.delivered(message.ts)
        frame = client_frame(message)
        if self._history is not None:
            self._history.deliver(channel, message, frame)
            return
        self.hub.fan_out(kind, channel, frame)

    async def _listen(self, peer: Peer, kind: Kind, channel: str) -> None:
        if kind == BROADCAST and self._history is not None:
            await self._history.listen(peer, channel)
        else:
            await self.hub.add(peer, kind, channel)

    async def _unlisten(self, peer: Peer, kind: Kind, channel: str) -> None:
        if kind == BROADCAST and self._history is not None:
            await self._history.unlisten(peer, channel)
        else:
            await self.hub.remove(peer, kind, channel)

    # --- subscriptions --------------------------------------------------------------------------

    async def _subscribe(
        self, peer: Peer, state: PeerState, message: Subscribe, kinds: set[Kind]
    ) -> None:
        channel = message.channel
        ticket = None
        if PRESENCE in kinds:
            # Hold this client's events from before upstream is subscribed until its sync is
            # sent; those after the sync's version then follow, none missing, none twice.
            ticket = self._views.hold(peer, channel, message.presence_diff, message.presence_chunk)
        listening = state.listening.setdefault(channel, set())
        history = self._history
        try:
            if history is not None and history.replays(message, kinds):
                await history.subscribe(peer, message, listening)
            for kind in kinds - listening:
                await self._listen(peer, kind, channel)
                listening.add(kind)
            for kind in listening - kinds:
                await self._unlisten(peer, kind, channel)
                listening.discard(kind)
                if kind == BROADCAST and history is not None:
                    history.drop(peer, channel)
        except BrokerError as exc:
            raise backend_failure("subscribe_failed", SUBSCRIBE_FAILED, channel, exc) from exc
        finally:
            if PRESENCE not in listening:
                self._views.drop(peer, channel)
            if not listening:
                del state.listening[channel]
        if ticket is None:
            return
        try:
            await self._views.first_sync(ticket)
        except PresenceError as exc:
            # The subscriber stays held: the reaper's tick retries and the client gets its sync.
            raise backend_failure(
                "presence_unavailable", PRESENCE_UNAVAILABLE, channel, exc
            ) from exc

    # --- presence -------------------------------------------------------------------------------

    async def _publish_presence(self, channel: str, data: bytes) -> None:
        # For stores that do not publish by themselves (memory).
        await self.brokers[PRESENCE].publish(PRESENCE, channel, data)

    # --- what the upkeep and the views ask of the node ------------------------------------------

    def _served(self) -> set[str]:
        # Two reaper periods after a lingering entry's end: at least one tick reaps it here.
        lingering = self._members.lingering(2 * self._upkeep.reap_interval)
        return self._peers.joined() | self._views.channels() | lingering

    def _reassert(self, channel: str) -> None:
        self._upkeep.reassert(channel)

    # --- the server API's requests, from any instance (realtime/engine/control.py) ---------------

    async def _control(self, request: Request) -> Reply:
        if request.op == "channels":
            return Reply("", "", channels=self.local_channels(request))
        if request.op == "disconnect":
            return Reply("", "", count=self.close_user(request.user, request.code, request.reason))
        if request.op == "unsubscribe":
            return Reply("", "", count=await self.unsubscribe_user(request.user, request.channel))
        return Reply("", "")

    def local_channels(self, request: Request) -> dict[str, int]:
        """This instance's channels after ``cursor`` matching ``pattern`` (the first ``limit``
        by name), each with its local subscribers (either kind, a connection counted once)."""
        regex = compile_patterns((request.pattern,)) if request.pattern else None
        names = set()
        for kind in (BROADCAST, PRESENCE):
            for channel in self.hub.names(kind):
                if channel > request.cursor and (regex is None or regex.fullmatch(channel)):
                    names.add(channel)
        chosen = sorted(names)[: request.limit] if request.limit else sorted(names)
        return {
            channel: len(self.hub.local(BROADCAST, channel) | self.hub.local(PRESENCE, channel))
            for channel in chosen
        }

    def close_user(self, user_id: str, code: int, reason: str) -> int:
        """Close every local connection of ``user_id`` with ``code``; how many."""
        closed = 0
        for peer in list(self._peers):
            close = getattr(peer, "close", None)
            if peer.user_id == user_id and close is not None:
                close(code, reason)
                closed += 1
        return closed

    async def unsubscribe_user(self, user_id: str, channel: str) -> int:
        """Unsubscribe every local connection of ``user_id`` from ``channel`` and take it out
        of the channel's presence; each is told with an ``unsubscribed`` error frame. How
        many connections it changed."""
        changed = 0
        for peer, state in list(self._peers.items()):
            if peer.user_id != user_id:
                continue
            if channel not in state.listening and channel not in state.joined:
                continue
            for kind in state.listening.pop(channel, set()):
                with contextlib.suppress(BrokerError):
                    await self._unlisten(peer, kind, channel)
            self._views.drop(peer, channel)
            if self._history is not None:
                self._history.drop(peer, channel)
            try:
                await self._members.leave(peer, state, channel)
            except FrameError as exc:
                log.warning("presence leave on unsubscribe failed: %s", exc)
            peer.send(error_frame("unsubscribed", "the server unsubscribed you", channel))
            changed += 1
        return changed
