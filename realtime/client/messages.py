"""What the gateway sends, as typed msgspec Structs (field names as docs/protocol.md writes
them). A subscription yields :data:`Message`; the rest answer the client's own frames.

New fields the gateway may add later are ignored, and an unknown frame type is skipped, so an
older client keeps working against a newer gateway.
"""

from __future__ import annotations

from typing import Any

import msgspec

Ref = str | int | None


class Member(msgspec.Struct, frozen=True, kw_only=True):
    """One present user: ``meta`` is what they tracked, ``updated_at`` Unix seconds."""

    user_id: str
    meta: dict[str, Any] = msgspec.field(default_factory=dict)
    updated_at: int = 0


class Position(msgspec.Struct, frozen=True):
    """A place in a history channel: the ``offset`` of a broadcast within ``epoch``."""

    offset: int
    epoch: str


class Frame(msgspec.Struct, tag_field="type", kw_only=True):
    """Base of every frame the gateway sends (tagged by ``type``)."""


class Broadcast(Frame, tag="broadcast"):
    """A broadcast on a channel. ``user_id`` is empty when it came from the HTTP API; ``offset``
    and ``epoch`` are set on history channels only."""

    channel: str
    event: str = "message"
    payload: Any = None
    user_id: str = ""
    ts: int = 0
    offset: int = 0
    epoch: str = ""


class PresenceEvent(Frame):
    """A member joined, changed its meta, or left. ``seq`` is the channel's presence version
    after it (0 from a seed gateway)."""

    channel: str
    user_id: str
    meta: dict[str, Any] = msgspec.field(default_factory=dict)
    updated_at: int = 0
    ts: int = 0
    seq: int = 0


class PresenceJoin(PresenceEvent, tag="presence_join"):
    """The user's first connection joined the channel."""


class PresenceUpdate(PresenceEvent, tag="presence_update"):
    """The user's meta changed (or another of their connections joined)."""


class PresenceLeave(PresenceEvent, tag="presence_leave"):
    """The user's last connection left the channel."""


class PresenceSync(Frame, tag="presence_sync"):
    """The whole member list at presence ``version``: it replaces what was known before."""

    channel: str
    users: list[Member]
    version: int = 0
    chunk: int = 0
    chunks: int = 0


class Subscribed(Frame, tag="subscribed"):
    """The answer to a subscribe that asked for history. Yielded by a subscription after a
    reconnect (``recovered`` set): ``recovered=False`` means broadcasts were missed that
    history no longer holds (or its epoch changed), none is replayed, and the application
    should reload its state; ``True``, every missed broadcast follows."""

    channel: str
    offset: int
    epoch: str
    recovered: bool | None = None


class Ack(Frame, tag="ack"):
    """A frame sent with ``ref`` was acted on; after a broadcast on a history channel,
    ``offset`` and ``epoch`` say where it was stored."""

    ref: Ref = None
    offset: int = 0
    epoch: str = ""


class ErrorFrame(Frame, tag="error"):
    code: str
    message: str = ""
    channel: str | None = None
    ref: Ref = None


ServerFrame = (
    Broadcast
    | PresenceJoin
    | PresenceUpdate
    | PresenceLeave
    | PresenceSync
    | Subscribed
    | Ack
    | ErrorFrame
)

#: What iterating a subscription yields.
Message = Broadcast | PresenceJoin | PresenceUpdate | PresenceLeave | PresenceSync | Subscribed

_decoder: msgspec.json.Decoder[ServerFrame] = msgspec.json.Decoder(ServerFrame)
encode = msgspec.json.Encoder().encode


def decode(data: str | bytes) -> ServerFrame | None:
    """One gateway frame, or None for a frame this client does not know (a newer gateway's
    extension it did not ask for) or cannot read."""
    try:
        return _decoder.decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None


# HTTP API answers (realtime.client.Publisher)


class Published(msgspec.Struct, frozen=True, kw_only=True):
    """``POST /api/event``'s answer; ``offset``/``epoch`` on history channels only. ``body`` is
    the answer's text as it came."""

    message_id: str
    offset: int = 0
    epoch: str = ""
    body: str = ""


class Publication(msgspec.Struct, frozen=True, kw_only=True):
    """One broadcast of a history page."""

    offset: int
    event: str = "message"
    payload: Any = None
    user_id: str = ""
    ts: int = 0


class HistoryPage(msgspec.Struct, frozen=True, kw_only=True):
    """``GET /api/history``'s answer: the channel's position (``offset``, ``epoch``), the
    oldest offset still kept (``first``), the page, and ``next`` (the ``since`` of the next
    page, None once this page reaches ``offset``)."""

    channel: str
    offset: int
    epoch: str
    first: int
    publications: list[Publication]
    next: int | None = None
