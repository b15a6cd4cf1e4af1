"""A page of a history channel's broadcasts, as ``GET /api/history`` and the ``history`` client
frame both answer it."""

from __future__ import annotations

import msgspec

from realtime.history.base import History
from realtime.wire.messages import MAX_SINCE, Publication, decode_bus

__all__ = ["MAX_SINCE", "HistoryPage", "Publication", "read_page"]


class HistoryPage(msgspec.Struct):
    channel: str
    offset: int  # the channel's position when read
    epoch: str
    first: int  # the oldest offset still kept
    publications: list[Publication]
    # ``since`` for the next page; None once this page reaches the position.
    next: int | None


async def read_page(history: History, channel: str, since: int, limit: int) -> HistoryPage:
    """At most ``limit`` broadcasts after ``since`` (0, or more than the history holds: as
    many as ``history.size``); raises HistoryError when the store cannot answer."""
    limit = min(limit or history.size, history.size)
    page = await history.store.read(channel, since, limit)
    publications = []
    for offset, data in page.entries:
        try:
            message = decode_bus(data)
        except msgspec.MsgspecError:
            continue  # not ours to show: only the gateway writes history
        publications.append(
            Publication(
                offset, message.event or "message", message.payload, message.user_id, message.ts
            )
        )
    last = publications[-1].offset if publications else max(since, page.first - 1)
    return HistoryPage(
        channel,
        page.position.offset,
        page.position.epoch,
        page.first,
        publications,
        last if last < page.position.offset else None,
    )
