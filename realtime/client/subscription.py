"""One channel of a :class:`~realtime.client.Client`: its messages, its members, its history
position and the presence the client tracks there."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from realtime.client.errors import SubscriptionOverflow
from realtime.client.messages import (
    Ack,
    Broadcast,
    Member,
    Message,
    Position,
    PresenceJoin,
    PresenceLeave,
    PresenceSync,
    PresenceUpdate,
    Subscribed,
)
from realtime.client.presence import Outcome, PresenceState

if TYPE_CHECKING:
    from realtime.client.client import Client


class Subscription:
    """Made by :meth:`Client.subscribe`; iterate it for the channel's messages::

        sub = await client.subscribe("room1")
        await sub.track({"name": "Alice"})
        await sub.publish("chat", {"text": "hi"})
        async for message in sub:
            match message:
                case Broadcast(event="chat", payload=payload):
                    print(payload)
                case PresenceJoin(user_id=user) | PresenceLeave(user_id=user):
                    print(user, sorted(sub.members))

    Messages are queued from the moment the gateway sends them; a queue holding ``max_queue``
    messages drops newer ones (counted in :attr:`dropped`, reported to ``on_error``) rather
    than grow without bound. Iteration ends when the subscription or the client is closed,
    and raises the error that ended it otherwise (the server API's ``unsubscribed``, a
    resubscribe refused after a reconnect, a reconnect refused for good).
    """

    def __init__(
        self,
        client: Client,
        channel: str,
        listen: tuple[str, ...],
        recover: bool,
        since: Position | None,
        max_queue: int,
    ) -> None:
        self._client = client
        self.channel = channel
        self.listen = listen
        self.recover = recover
        #: The last broadcast handed to this subscription on a history channel (or the
        #: position the gateway answered); a reconnect recovers from it with ``since``.
        self.position = since
        #: Messages dropped because the queue was full.
        self.dropped = 0
        self._presence = PresenceState()
        self._meta: dict[str, Any] | None = None
        self._queue: collections.deque[Message] = collections.deque()
        self._max_queue = max_queue
        self._overflowing = False
        self._wakeup = asyncio.Event()
        self._ended = False
        self._error: BaseException | None = None

    # --- the application's side --------------------------------------------------------------

    @property
    def members(self) -> Mapping[str, Member]:
        """The channel's present members (user id -> :class:`Member`), exact as of the last
        presence message this client received; empty without ``"presence"`` in ``listen``."""
        return self._presence.members

    @property
    def tracked(self) -> Mapping[str, Any] | None:
        """The meta this client is present with here (rejoined with after a reconnect), or
        None when it is not present."""
        return None if self._meta is None else MappingProxyType(self._meta)

    @property
    def active(self) -> bool:
        return not self._ended

    async def publish(self, event: str, payload: Any = None) -> Ack:
        """Broadcast ``event`` with ``payload`` (any JSON value) to the channel's subscribers,
        this one included when it listens to broadcasts; returns the gateway's ``ack`` (with
        ``offset`` and ``epoch`` on a history channel). Raises :class:`GatewayError`
        (``forbidden``, ``publish_failed``, ...) or :class:`ConnectionLost`; it is never sent
        twice."""
        return await self._client.publish(self.channel, event, payload)

    async def track(self, meta: Mapping[str, Any] | None = None) -> None:
        """Be present in the channel with ``meta`` (join, or update the meta when present
        already). After a reconnect the client joins again with the same meta."""
        new = dict(meta or {})
        kind = "presence_join" if self._meta is None else "presence_update"
        await self._client._request({"type": kind, "channel": self.channel, "payload": new})
        self._meta = new

    async def untrack(self) -> None:
        """Leave the channel's presence (the others get ``presence_leave`` at once)."""
        self._meta = None
        await self._client._request({"type": "presence_leave", "channel": self.channel})

    async def unsubscribe(self) -> None:
        """Leave the channel's presence if tracked, stop receiving, and end the iteration."""
        if self._ended:
            return
        self._client._forget(self)
        try:
            if self._meta is not None and self._client.connected:
                await self.untrack()
            if self._client.connected:
                await self._client._request({"type": "unsubscribe", "channel": self.channel})
        finally:
            self._end(None)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Message:
        while not self._queue:
            if self._ended:
                if self._error is not None:
                    raise self._error
                raise StopAsyncIteration
            self._wakeup.clear()
            await self._wakeup.wait()
        return self._queue.popleft()

    # --- the client's side -------------------------------------------------------------------

    def subscribe_frame(self, resync: bool = False) -> dict[str, Any]:
        """The ``subscribe`` frame: with ``since`` (or ``history: 0`` for a first position)
        when this subscription recovers history; a presence resync asks for neither."""
        frame: dict[str, Any] = {
            "type": "subscribe",
            "channel": self.channel,
            "listen": list(self.listen),
        }
        if self.recover and not resync and "broadcast" in self.listen:
            if self.position is not None:
                frame["since"] = {"offset": self.position.offset, "epoch": self.position.epoch}
            else:
                # Ignored on a channel without history; on one with history it answers the
                # current position, so a reconnect before any broadcast still recovers.
                frame["history"] = 0
        return frame

    def on_broadcast(self, message: Broadcast) -> None:
        if message.offset:
            position = self.position
            if (
                position is not None
                and message.epoch == position.epoch
                and message.offset <= position.offset
            ):
                return  # delivered already (a replay overlapping live delivery): once only
            self.position = Position(message.offset, message.epoch)
        self._push(message)

    def on_subscribed(self, message: Subscribed) -> None:
        if message.recovered is None:  # the first position (``history: 0``)
            if self.position is None:
                self.position = Position(message.offset, message.epoch)
            return
        if not message.recovered:
            # Nothing is replayed: what follows comes after the gateway's position.
            self.position = Position(message.offset, message.epoch)
        # recovered=True: the replay follows and moves the position broadcast by broadcast.
        self._push(message)

    def recovery_failed(self, asked_since: bool) -> None:
        """The gateway subscribed but could not read history (``history_unavailable``): when
        a recovery was asked for, tell the application as the gateway tells of a lost one,
        with ``recovered=False`` (reload), and go on from the live broadcasts."""
        if asked_since and self.position is not None:
            self._push(
                Subscribed(
                    channel=self.channel,
                    offset=self.position.offset,
                    epoch=self.position.epoch,
                    recovered=False,
                )
            )

    def on_sync(self, message: PresenceSync) -> None:
        if self._presence.sync(message):
            self._push(
                PresenceSync(
                    channel=message.channel,
                    users=list(self._presence.members.values()),
                    version=message.version,
                )
            )

    def on_presence(self, message: PresenceJoin | PresenceUpdate | PresenceLeave) -> Outcome:
        outcome = self._presence.apply(message)
        if outcome is Outcome.APPLIED:
            self._push(message)
        return outcome

    def connection_lost(self) -> None:
        self._presence.forget()

    def _push(self, message: Message) -> None:
        if self._ended:
            return
        if len(self._queue) >= self._max_queue:
            self.dropped += 1
            if not self._overflowing:  # reported once per run of drops, not once per drop
                self._overflowing = True
                self._client._report(SubscriptionOverflow(self.channel, self.dropped))
            return
        self._overflowing = False
        self._queue.append(message)
        self._wakeup.set()

    def _end(self, error: BaseException | None) -> None:
        if not self._ended:
            self._ended = True
            self._error = error
            self._wakeup.set()
