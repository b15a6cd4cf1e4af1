"""History channels on the node's paths: a publish stored before the MQ carries it, live
delivery in offset order (``ordering.py``), recovery on subscribe (``recovery.py``) and the
``history`` frame's pages. The node hands every history-related step here and knows nothing
of offsets itself; with history off (no ``HISTORY_CHANNELS``) none of this exists.
"""

from __future__ import annotations

import logging

from realtime.engine.failures import HISTORY_FAILED, HISTORY_READ_FAILED, backend_failure
from realtime.engine.hub import Hub, Peer
from realtime.engine.ordering import Ordering
from realtime.engine.recovery import Recoveries
from realtime.errors import FrameError, HistoryError
from realtime.history.base import History, Position
from realtime.history.pages import read_page
from realtime.wire.frames import Outgoing
from realtime.wire.messages import (
    BROADCAST,
    BusMessage,
    HistoryOut,
    HistoryRequest,
    Kind,
    Subscribe,
    encode,
)

log = logging.getLogger("realtime.engine.node")

# How long a history broadcast that came ahead of a missing offset waits for it before the gap
# is filled from history: two instances publishing at once reach the MQ in either order, a few
# milliseconds apart.
ORDER_WAIT = 0.1
NO_HISTORY = "this channel keeps no history (HISTORY_CHANNELS)"


class HistoryPath:
    def __init__(self, history: History, hub: Hub) -> None:
        self.history = history
        self._hub = hub
        self.recoveries = Recoveries(history)
        self._ordering = Ordering(
            history.store.read, self.fan_out, self._tell, ORDER_WAIT, history.size
        )

    def keeps(self, channel: str) -> bool:
        return channel in self.history.channels

    async def start(self) -> None:
        await self.history.store.start()

    async def stop_ordering(self) -> None:
        await self._ordering.close()

    async def close(self) -> None:
        await self.history.store.close()

    # --- publishing -----------------------------------------------------------------------------

    async def store(self, channel: str, data: bytes) -> tuple[Position, bytes]:
        """Store the bus message ``data`` as the channel's next offset; returns its position and
        the message completed with it. FrameError ``publish_failed`` when the store fails."""
        try:
            # The offset and epoch it gains fit in the envelope's reserve.
            return await self.history.store.append(channel, data[:-1])
        except HistoryError as exc:
            raise backend_failure("publish_failed", HISTORY_FAILED, channel, exc) from exc

    def not_carried(self, channel: str, position: Position, exc: Exception) -> None:
        """Stored, but the MQ refused it: a retry would store it twice, so the publish stands.
        A client recovering with ``since`` gets it."""
        log.warning(
            "stored broadcast %d on %r not carried by the MQ: %s",
            position.offset,
            channel,
            exc,
            extra={"channel": channel},
        )

    # --- delivering -----------------------------------------------------------------------------

    def deliver(self, channel: str, message: BusMessage, frame: Outgoing) -> None:
        """A broadcast from the bus: in offset order when it has one, as it comes if not (a seed
        gateway's publish)."""
        if message.offset:
            self._ordering.accept(channel, message, frame)
        else:
            self.fan_out(channel, message, frame)

    def fan_out(self, channel: str, message: BusMessage, frame: Outgoing) -> None:
        follows = self.recoveries.on(channel)
        if follows is None:
            self._hub.fan_out(BROADCAST, channel, frame)
            return
        for peer in tuple(self._hub.local(BROADCAST, channel)):
            follow = follows.get(peer)
            if follow is None or follow.admit(message, frame):
                peer.send(frame)

    def _tell(self, channel: str, frame: Outgoing) -> None:
        self._hub.fan_out(BROADCAST, channel, frame)

    # --- subscribing ----------------------------------------------------------------------------

    async def listen(self, peer: Peer, channel: str) -> None:
        """Add ``peer``'s broadcasts upstream; the instance's first subscriber of a history
        channel starts its count at the position read after it."""
        ordering = self._ordering
        opening = self.keeps(channel) and ordering.open(channel)
        try:
            await self._hub.add(peer, BROADCAST, channel)
        except BaseException:
            if opening and not self._hub.local(BROADCAST, channel):
                ordering.forget(channel)
            raise
        if opening:
            await ordering.begin(channel)

    async def unlisten(self, peer: Peer, channel: str) -> None:
        await self._hub.remove(peer, BROADCAST, channel)
        if not self._hub.local(BROADCAST, channel):
            self._ordering.forget(channel)

    def replays(self, message: Subscribe, kinds: set[Kind]) -> bool:
        """Does this subscribe ask for a replay (``since`` or ``history``) that applies?"""
        return (
            BROADCAST in kinds
            and (message.since is not None or message.history is not None)
            and self.keeps(message.channel)
        )

    async def subscribe(self, peer: Peer, message: Subscribe, listening: set[Kind]) -> None:
        """Subscribe ``peer``'s broadcasts with the replay it asked for (``recovery.py``)."""
        channel = message.channel

        async def add_live() -> None:
            await self.listen(peer, channel)
            listening.add(BROADCAST)

        if BROADCAST in listening:
            # Already live: subscribe again, so the replay and live ones merge.
            await self.unlisten(peer, channel)
            listening.discard(BROADCAST)
            self.recoveries.drop(peer, channel)
        await self.recoveries.subscribe(peer, channel, message.since, message.history, add_live)

    def drop(self, peer: Peer, channel: str) -> None:
        self.recoveries.drop(peer, channel)

    def drop_peer(self, peer: Peer, channels: list[str]) -> None:
        self.recoveries.drop_peer(peer, channels)

    # --- reading --------------------------------------------------------------------------------

    async def page(self, peer: Peer, request: HistoryRequest) -> None:
        """Send ``peer`` the page it asked for, as ``GET /api/history`` gives it."""
        channel = request.channel
        if not self.keeps(channel):
            raise FrameError("no_history", NO_HISTORY, channel)
        try:
            page = await read_page(self.history, channel, request.since, request.limit)
        except HistoryError as exc:
            raise backend_failure("history_unavailable", HISTORY_READ_FAILED, channel, exc) from exc
        frame = HistoryOut(
            page.channel,
            page.offset,
            page.epoch,
            page.first,
            page.publications,
            page.next,
            request.ref,
        )
        peer.send(Outgoing(encode(frame)))
