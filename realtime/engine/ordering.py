"""Live order on history channels: each instance hands its subscribers a channel's broadcasts
in offset order, whichever instance published them and in whatever order the MQ carried them.

Per channel with local subscribers, the next offset expected. A broadcast that comes ahead of
it is held; the gap is waited for ``wait`` seconds (it is usually a broadcast another instance
stored first but handed to the MQ second), then filled from history. What history no longer
has is skipped, and the subscribers get an ``error`` ``broadcasts_lost`` naming the offsets.
A broadcast at or below the expected offset was delivered already (the MQ carried it twice, or
it was filled from history before it came live) and is dropped.

The count starts at the channel's position in history read just after its first local
subscriber was added upstream (broadcasts arriving meanwhile are held): subscribers of this
instance get every broadcast above it. Should that read fail, it starts from the first
broadcast received, and one with a lower offset arriving later still goes out, out of order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import msgspec

from realtime.errors import HistoryError
from realtime.history.base import Page
from realtime.wire.frames import Outgoing
from realtime.wire.messages import BusMessage, client_frame, decode_bus, error_frame

log = logging.getLogger("realtime.engine.ordering")

Send = Callable[[str, BusMessage, Outgoing], None]
Read = Callable[[str, int, int], Awaitable[Page]]
Tell = Callable[[str, Outgoing], None]


@dataclass
class _Line:
    epoch: str
    next: int  # the next offset to deliver
    base: int  # the first offset seen: lower ones were never expected here
    held: dict[int, tuple[BusMessage, Outgoing]] = field(default_factory=dict)
    filling: asyncio.Task[None] | None = None
    opening: bool = False  # the position is being read: hold everything


class Ordering:
    def __init__(self, read: Read, send: Send, tell: Tell, wait: float, size: int) -> None:
        self._read = read
        self._send = send
        self._tell = tell
        self._wait = wait
        self._size = size
        self._lines: dict[str, _Line] = {}
        self.filled = 0  # broadcasts delivered from history to fill a live gap
        self.lost = 0  # broadcasts history no longer had when a gap was filled

    def open(self, channel: str) -> bool:
        """Before the channel's first local subscriber is added upstream: hold what comes
        until :meth:`begin`. False when the channel is already counted here."""
        if channel in self._lines:
            return False
        self._lines[channel] = _Line("", 0, 0, opening=True)
        return True

    async def begin(self, channel: str) -> None:
        """Read where the channel stands and deliver what came above it meanwhile."""
        try:
            page = await self._read(channel, 1 << 62, 0)
        except HistoryError as exc:
            log.warning("history position read failed: %s", exc, extra={"channel": channel})
            page = None
        line = self._lines.get(channel)
        if line is None or not line.opening:
            return
        held, line.held = line.held, {}
        if page is None:
            del self._lines[channel]
        else:
            line.opening = False
            line.epoch = page.position.epoch
            # Everything at or below the position is from before the subscription.
            line.next, line.base = page.position.offset + 1, 0
        for offset in sorted(held):
            self.accept(channel, *held[offset])

    def accept(self, channel: str, message: BusMessage, frame: Outgoing) -> None:
        line = self._lines.get(channel)
        if line is not None and line.opening:
            line.held[message.offset] = (message, frame)
            return
        if line is None or line.epoch != message.epoch:
            if line is not None:
                # History began again: what was held of the old epoch goes out as it is.
                self._release_all(channel, line)
            line = self._lines[channel] = _Line(message.epoch, message.offset, message.offset)
        offset = message.offset
        if offset < line.next:
            if offset < line.base and offset not in line.held:
                line.base = offset
                self._send(channel, message, frame)
            return
        if offset > line.next:
            line.held[offset] = (message, frame)
            if line.filling is None:
                line.filling = asyncio.get_running_loop().create_task(self._fill(channel, line))
            return
        self._send(channel, message, frame)
        line.next += 1
        self._drain(channel, line)

    def forget(self, channel: str) -> None:
        """The channel's last local subscriber left: its count starts afresh next time."""
        line = self._lines.pop(channel, None)
        if line is not None and line.filling is not None:
            line.filling.cancel()

    async def close(self) -> None:
        tasks = [line.filling for line in self._lines.values() if line.filling is not None]
        self._lines.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _drain(self, channel: str, line: _Line, cancel: bool = True) -> None:
        while line.next in line.held:
            message, frame = line.held.pop(line.next)
            self._send(channel, message, frame)
            line.next += 1
        if cancel and not line.held and line.filling is not None:
            line.filling.cancel()
            line.filling = None

    def _release_all(self, channel: str, line: _Line) -> None:
        if line.filling is not None:
            line.filling.cancel()
        for offset in sorted(line.held):
            self._send(channel, *line.held[offset])

    async def _fill(self, channel: str, line: _Line) -> None:
        try:
            while line.held and self._lines.get(channel) is line:
                # A timer, not a poll: the gap usually closes by itself within it.
                await asyncio.sleep(self._wait)
                await self._fill_once(channel, line)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("filling a gap failed", extra={"channel": channel})
        finally:
            if line.filling is asyncio.current_task():
                line.filling = None

    def _skip(self, channel: str, line: _Line, to: int) -> None:
        """Give up on the offsets from ``line.next`` to ``to`` (excluded), telling the
        subscribers."""
        if to <= line.next:
            return
        self.lost += to - line.next
        self._tell(
            channel,
            error_frame(
                "broadcasts_lost",
                f"broadcasts {line.next} to {to - 1} of this channel could not be delivered"
                " (not in history any more, or history unavailable)",
                channel,
            ),
        )
        line.next = to

    async def _fill_once(self, channel: str, line: _Line) -> None:
        ahead = min(line.held)
        want = min(ahead - line.next, self._size)
        try:
            page = await self._read(channel, line.next - 1, want)
        except HistoryError as exc:
            log.warning("history read to fill a gap failed: %s", exc, extra={"channel": channel})
            page = None
        if self._lines.get(channel) is not line:
            return
        ahead = min(line.held, default=ahead)
        if page is not None and page.position.epoch == line.epoch:
            for offset, data in page.entries:
                if offset < line.next:  # came live while history was read
                    continue
                if offset >= ahead:
                    break
                try:
                    message = decode_bus(data)
                except msgspec.MsgspecError:
                    break
                self._skip(channel, line, offset)  # history no longer reaches back that far
                self.filled += 1
                self._send(channel, message, client_frame(message))
                line.next += 1
        self._skip(channel, line, min(line.held, default=line.next))
        self._drain(channel, line, cancel=False)
