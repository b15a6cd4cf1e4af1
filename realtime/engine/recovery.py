"""Recovery on subscribe: replay what a client missed of a history channel, then continue live
with no gap and no duplicate.

The subscriber is added upstream first and its live broadcasts are held (``Follow.held``); then
history is read: everything at or below the position read is replayed from history, everything
above it arrives live (it was appended after the read, so published after the upstream
subscribe), and the held ones are let through once the replay is queued, those the replay
already covered dropped by offset.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import msgspec

from realtime import metrics
from realtime.engine.hub import Peer
from realtime.errors import FrameError, HistoryError
from realtime.history.base import History, Page
from realtime.wire.frames import Outgoing
from realtime.wire.messages import (
    BusMessage,
    Since,
    client_frame,
    decode_bus,
    subscribed_frame,
)

log = logging.getLogger("realtime.engine.recovery")

HISTORY_UNAVAILABLE = "history is unavailable right now; live broadcasts continue"


@dataclass
class Follow:
    """One subscriber of one history channel that asked for a replay."""

    epoch: str = ""
    # Offsets at or below this one (of ``epoch``) were replayed: dropped when they come live.
    floor: int = 0
    # Live broadcasts held while the replay is read; None once it is sent.
    held: list[tuple[BusMessage, Outgoing]] | None = field(default_factory=list)

    def admit(self, message: BusMessage, frame: Outgoing) -> bool:
        """Send ``message`` now? Held while the replay is read; a replayed one is dropped."""
        if self.held is not None:
            self.held.append((message, frame))
            return False
        if not message.offset:  # not from history (a seed gateway's publish): as it comes
            return True
        if message.epoch != self.epoch:
            # History was lost and began again: nothing of the new epoch was replayed.
            self.epoch, self.floor = message.epoch, 0
        return message.offset > self.floor


class Recoveries:
    def __init__(self, history: History) -> None:
        self.history = history
        self._follows: dict[str, dict[Peer, Follow]] = {}

    def on(self, channel: str) -> dict[Peer, Follow] | None:
        return self._follows.get(channel)

    def drop(self, peer: Peer, channel: str) -> None:
        follows = self._follows.get(channel)
        if follows is not None and follows.pop(peer, None) is not None and not follows:
            del self._follows[channel]

    def drop_peer(self, peer: Peer, channels: list[str]) -> None:
        for channel in channels:
            self.drop(peer, channel)

    async def subscribe(
        self,
        peer: Peer,
        channel: str,
        since: Since | None,
        last: int | None,
        add_live: Callable[[], Awaitable[None]],
    ) -> None:
        """Subscribe ``peer`` live (``add_live``), then send it the ``subscribed`` frame, the
        replay and the held live broadcasts, in that order."""
        follow = Follow()
        self._follows.setdefault(channel, {})[peer] = follow
        try:
            await add_live()
            page, recovered = await self._read(channel, since, last)
        except HistoryError as exc:
            log.warning("history read on %r failed: %s", channel, exc, extra={"channel": channel})
            self._release(peer, follow)
            raise FrameError("history_unavailable", HISTORY_UNAVAILABLE, channel) from exc
        except BaseException:
            self.drop(peer, channel)
            raise
        position = page.position
        follow.epoch, follow.floor = position.epoch, position.offset
        peer.send(subscribed_frame(channel, position.offset, position.epoch, recovered))
        for _, data in page.entries:
            try:
                message = decode_bus(data)
            except msgspec.MsgspecError:
                log.warning("dropped undecodable history entry", extra={"channel": channel})
                continue
            peer.send(client_frame(message))
        self._release(peer, follow)

    def _release(self, peer: Peer, follow: Follow) -> None:
        held, follow.held = follow.held or [], None
        for message, frame in held:
            if follow.admit(message, frame):
                peer.send(frame)

    async def _read(
        self, channel: str, since: Since | None, last: int | None
    ) -> tuple[Page, bool | None]:
        store, size = self.history.store, self.history.size
        if since is None:
            # The last ``last`` broadcasts: where the channel stands, then those before it.
            head = await store.read(channel, 1 << 62, 0)
            want = min(last or 0, size)
            if not want or not head.position.offset:
                return head, None
            page = await store.read(channel, max(head.position.offset - want, 0), want)
            if page.position.epoch != head.position.epoch:
                return Page([], page.position, page.first), None
            # Only up to the first read's position: later ones come live (held meanwhile).
            entries = [e for e in page.entries if e[0] <= head.position.offset]
            return Page(entries, head.position, page.first), None
        page = await store.read(channel, since.offset, size)
        position = page.position
        missed = position.offset - since.offset
        recovered = (
            since.epoch == position.epoch and 0 <= missed <= size and page.first <= since.offset + 1
        )
        if not recovered:
            metrics.HISTORY_MISS.inc()
            return Page([], position, page.first), False
        metrics.HISTORY_HIT.inc()
        return page, True
