"""The core: a client message in -> broker or presence; a bus message in -> the hub.

The node knows no WebSocket: it talks to peers (``hub.Peer``), brokers and a presence store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass, field

import msgspec

from realtime.brokers.base import Broker
from realtime.errors import BrokerError, PresenceError
from realtime.hub import Hub, Peer
from realtime.messages import (
    BROADCAST,
    PRESENCE,
    PRESENCE_TYPES,
    AnyClientMessage,
    Broadcast,
    FrameError,
    Kind,
    Member,
    Meta,
    PresenceJoin,
    PresenceLeave,
    PresenceUpdate,
    Subscribe,
    Unsubscribe,
    bus_broadcast,
    bus_presence,
    client_frame,
    decode_bus,
    sync_frame,
)
from realtime.presence.base import PresenceStore

log = logging.getLogger("realtime.node")


@dataclass(eq=False)
class Present:
    """A user present in a channel through one or more of this instance's connections."""

    member: Member
    peers: set[Peer] = field(default_factory=set)


@dataclass(eq=False)
class PeerState:
    """What the node remembers of one connection, so closing it undoes everything."""

    listening: dict[str, set[Kind]] = field(default_factory=dict)
    joined: set[str] = field(default_factory=set)


class Node:
    def __init__(
        self, broker: Broker, presence_bus: Broker, store: PresenceStore, presence_ttl: int
    ) -> None:
        self.brokers: dict[Kind, Broker] = {BROADCAST: broker, PRESENCE: presence_bus}
        self.hub = Hub(self.brokers)
        self.store = store
        self._ttl = presence_ttl
        self._peers: dict[Peer, PeerState] = {}
        self._present: dict[tuple[str, str], Present] = {}
        self._refresher: asyncio.Task[None] | None = None
        self.delivered = 0

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        started: set[int] = set()
        for broker in self.brokers.values():
            if id(broker) not in started:
                started.add(id(broker))
                await broker.start(self.deliver)
        self._refresher = asyncio.create_task(self._refresh_loop(), name="presence-refresh")

    async def close(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
            self._refresher = None
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
        self._peers[peer] = PeerState()

    async def disconnect(self, peer: Peer) -> None:
        state = self._peers.pop(peer, None)
        if state is None:
            return
        for channel in list(state.joined):
            try:
                await self._leave(peer, state, channel)
            except (PresenceError, BrokerError) as exc:
                log.warning("presence leave on close failed: %s", exc, extra={"channel": channel})
        for channel, kinds in state.listening.items():
            for kind in kinds:
                with contextlib.suppress(BrokerError):
                    await self.hub.remove(peer, kind, channel)

    async def handle(self, peer: Peer, message: AnyClientMessage) -> None:
        """Act on one decoded client frame; raises FrameError for the client to see."""
        state = self._peers[peer]
        match message:
            case Broadcast(channel=channel, event=event, payload=payload):
                await self.publish(channel, event, payload, peer.user_id)
            case Subscribe(channel=channel, listen=listen):
                await self._subscribe(peer, state, channel, set(listen))
            case Unsubscribe(channel=channel):
                for kind in state.listening.pop(channel, set()):
                    await self.hub.remove(peer, kind, channel)
            case (
                PresenceJoin(channel=channel, payload=meta)
                | PresenceUpdate(channel=channel, payload=meta)
            ):
                await self._join(peer, state, channel, meta)
            case PresenceLeave(channel=channel):
                await self._leave(peer, state, channel)

    # --- broadcast ------------------------------------------------------------------------------

    async def publish(
        self, channel: str, event: str, payload: msgspec.Raw, user_id: str = ""
    ) -> str:
        """Publish a broadcast to every instance; returns its message id."""
        try:
            await self.brokers[BROADCAST].publish(
                BROADCAST, channel, bus_broadcast(channel, event, payload, user_id)
            )
        except BrokerError as exc:
            raise FrameError("publish_failed", str(exc), channel) from exc
        return uuid.uuid4().hex

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
        frame = client_frame(message)
        for peer in tuple(peers):
            peer.send(frame)
        self.delivered += len(peers)

    # --- subscriptions --------------------------------------------------------------------------

    async def _subscribe(
        self, peer: Peer, state: PeerState, channel: str, kinds: set[Kind]
    ) -> None:
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
            if not listening:
                del state.listening[channel]
        if PRESENCE in kinds:
            # Subscribed upstream first, so no event after the listing is missed.
            try:
                members = await self.store.members(channel)
            except PresenceError as exc:
                raise FrameError("presence_unavailable", str(exc), channel) from exc
            peer.send(sync_frame(channel, members))

    # --- presence -------------------------------------------------------------------------------

    async def _join(self, peer: Peer, state: PeerState, channel: str, meta: Meta) -> None:
        key = (channel, peer.user_id)
        present = self._present.get(key)
        member = Member(peer.user_id, meta, int(time.time()))
        kind = "presence_update" if present is not None else "presence_join"
        try:
            await self.store.put(channel, member)
        except PresenceError as exc:
            raise FrameError("presence_unavailable", str(exc), channel) from exc
        if present is None:
            present = self._present[key] = Present(member)
        present.member = member
        present.peers.add(peer)
        state.joined.add(channel)
        await self._announce(kind, channel, member)

    async def _leave(self, peer: Peer, state: PeerState, channel: str) -> None:
        if channel not in state.joined:
            return
        state.joined.discard(channel)
        key = (channel, peer.user_id)
        present = self._present.get(key)
        if present is None:
            return
        present.peers.discard(peer)
        if present.peers:
            return  # the user is still here through another connection
        del self._present[key]
        try:
            await self.store.remove(channel, peer.user_id)
        except PresenceError as exc:
            raise FrameError("presence_unavailable", str(exc), channel) from exc
        await self._announce("presence_leave", channel, Member(peer.user_id))

    async def _announce(self, kind: str, channel: str, member: Member) -> None:
        try:
            await self.brokers[PRESENCE].publish(
                PRESENCE, channel, bus_presence(kind, channel, member)
            )
        except BrokerError as exc:
            raise FrameError("publish_failed", str(exc), channel) from exc

    async def _refresh_loop(self) -> None:
        # Well inside the TTL, so a live member never expires, and a Redis that restarted empty
        # is refilled within a third of the TTL.
        interval = max(1.0, self._ttl / 3)
        while True:
            await asyncio.sleep(interval)
            try:
                await self.store.put_many(
                    [(channel, present.member) for (channel, _), present in self._present.items()]
                )
            except PresenceError as exc:
                log.warning("presence refresh failed: %s", exc)
            except Exception:
                log.exception("presence refresh failed")
