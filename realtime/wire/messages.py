"""Every wire message as a msgspec Struct: client frames, the HTTP API's event body, server
frames and the bus message, with the encoders and decoders built once.

Client frames are a tagged union on ``type``. Server frames and the bus message keep the seed's
field names. New fields always get defaults so that old peers keep decoding.
"""

from __future__ import annotations

import re
import time
from typing import Annotated, Any, Literal

import msgspec

from realtime.errors import FrameError
from realtime.wire.frames import Outgoing

Kind = Literal["broadcast", "presence"]
BROADCAST: Kind = "broadcast"
PRESENCE: Kind = "presence"
KINDS: tuple[Kind, ...] = (BROADCAST, PRESENCE)

MAX_CHANNEL_LENGTH = 200
#: Channels starting with this are the gateway's own (liveness probes): clients may not use
#: them, so a probe never reaches a client and a client cannot fake one.
RESERVED_PREFIX = "__realtime__"
RESERVED_MESSAGE = f"channel names starting with {RESERVED_PREFIX!r} are reserved for the gateway"
MAX_TOKEN_LENGTH = 16384
Channel = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_CHANNEL_LENGTH)]
Meta = dict[str, Any]
NULL = msgspec.Raw(b"null")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# --- client -> gateway -------------------------------------------------------------------------


Ref = str | int | None


class ClientMessage(msgspec.Struct, tag_field="type", kw_only=True):
    """A frame a client sends. ``ref`` (our extension) asks for an ``ack`` once it is done."""

    ref: Ref = None


class Since(msgspec.Struct, forbid_unknown_fields=True):
    """A position in a history channel: the last offset a client received, of that epoch."""

    offset: Annotated[int, msgspec.Meta(ge=0)]
    epoch: Annotated[str, msgspec.Meta(max_length=64)] = ""


class Subscribe(ClientMessage, tag="subscribe"):
    channel: Channel
    listen: list[Kind] = msgspec.field(default_factory=lambda: [BROADCAST, PRESENCE])
    # Extensions, off unless asked for: batched ``presence_diff`` frames instead of one frame
    # per presence event, and a ``presence_sync`` split into frames of at most this many users.
    presence_diff: bool = False
    presence_chunk: Annotated[int, msgspec.Meta(ge=0)] = 0
    # History channels only: replay what came after ``since``, or the last ``history``
    # broadcasts (0: none, only the position); either gets a ``subscribed`` frame first.
    since: Since | None = None
    history: Annotated[int, msgspec.Meta(ge=0)] | None = None


# Far above any offset, and exact as a Lua number (a double), which the Redis script reads.
MAX_SINCE = 1 << 62


class HistoryRequest(ClientMessage, tag="history"):
    """Extension: a page of a history channel's broadcasts after offset ``since``, at most
    ``limit`` (0: ``HISTORY_SIZE``), as ``GET /api/history`` gives it; allowed as subscribing is."""

    channel: Channel
    since: Annotated[int, msgspec.Meta(ge=0, le=MAX_SINCE)] = 0
    limit: Annotated[int, msgspec.Meta(ge=0)] = 0


class Unsubscribe(ClientMessage, tag="unsubscribe"):
    channel: Channel


class Broadcast(ClientMessage, tag="broadcast"):
    channel: Channel
    event: str = "message"
    payload: msgspec.Raw = NULL


class PresenceJoin(ClientMessage, tag="presence_join"):
    channel: Channel
    payload: Meta = msgspec.field(default_factory=dict)


class PresenceUpdate(ClientMessage, tag="presence_update"):
    channel: Channel
    payload: Meta = msgspec.field(default_factory=dict)


class PresenceLeave(ClientMessage, tag="presence_leave"):
    channel: Channel


class Refresh(ClientMessage, tag="refresh"):
    """Extension: a fresh token for the connection's own user, before (or just after) the
    current one expires."""

    token: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_TOKEN_LENGTH)]


AnyClientMessage = (
    Subscribe
    | Unsubscribe
    | Broadcast
    | PresenceJoin
    | PresenceUpdate
    | PresenceLeave
    | Refresh
    | HistoryRequest
)
_client_decoder: msgspec.json.Decoder[AnyClientMessage] = msgspec.json.Decoder(AnyClientMessage)


# --- nesting depth ------------------------------------------------------------------------------

# msgspec recurses once per nesting level and raises RecursionError near Python's limit (a
# 2 KB frame of 1,000 nested arrays did), so depth is checked before decoding.
DEFAULT_MAX_DEPTH = 64
_KEEP_BRACKETS_AND_QUOTES = bytes(set(range(256)) - set(b'[]{}"'))
_STRING = re.compile(rb'"[^"]*"')
# Openings become "(" and closings ")".
_BRACKETS = bytes.maketrans(b"[{]}", b"(())")


def nesting_depth(data: bytes | str, limit: int = 1_000_000) -> int:
    """How deep the arrays and objects in ``data`` nest (brackets inside strings ignored),
    counted up to ``limit`` + 1; for unbalanced input, an upper bound of how deep a parser
    would go before failing. Every step is a C-speed pass over the bytes, no Python loop per
    byte: a 64 KiB frame of brackets takes about a millisecond."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    if b"\\" in data:
        # Escaped backslashes first, then escaped quotes: every quote left delimits a string.
        data = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    shape = data.translate(None, _KEEP_BRACKETS_AND_QUOTES)
    # Two adjacent quotes enclose nothing that matters (a string without brackets, or the end
    # of one and the start of the next): dropping them keeps every other byte's side. Most
    # strings go here, cheaply; the few left holding brackets are cut out by the pattern.
    shape = shape.replace(b'""', b"")
    if b'"' in shape:
        shape = _STRING.sub(b"", shape)
    brackets = shape.replace(b'"', b"").translate(_BRACKETS)
    # Each pass removes the innermost level.
    depth = 0
    while b"()" in brackets and depth <= limit:
        brackets = brackets.replace(b"()", b"")
        depth += 1
    return depth + brackets.count(b"(")


def check_depth(data: bytes | str, max_depth: int) -> None:
    """Raise ``invalid_json`` when ``data`` nests deeper than ``max_depth``."""
    # Cheap first: a document with fewer opening brackets than the limit cannot exceed it,
    # and counting is done in C; only the rest is scanned.
    if isinstance(data, str):
        opening = data.count("[") + data.count("{")
    else:
        opening = data.count(b"[") + data.count(b"{")
    if opening > max_depth and nesting_depth(data, max_depth) > max_depth:
        raise FrameError("invalid_json", f"JSON nests deeper than {max_depth} levels")


def decode_client(data: bytes | str, max_depth: int = DEFAULT_MAX_DEPTH) -> AnyClientMessage:
    """Decode one client frame, or raise :class:`FrameError` saying what is wrong."""
    check_depth(data, max_depth)
    try:
        return _client_decoder.decode(data)
    except RecursionError:  # a last resort: check_depth should have refused it already
        raise FrameError("invalid_json", "JSON nests too deeply") from None
    except msgspec.ValidationError as exc:
        text = str(exc)
        if text.endswith("at `$.type`") or "missing required field `type`" in text:
            raise FrameError("unknown_type", f"{text}; expected one of {CLIENT_TYPES}") from None
        raise FrameError("invalid_message", text) from None
    except msgspec.DecodeError as exc:
        raise FrameError("invalid_json", f"frame is not a JSON object: {exc}") from None


CLIENT_TYPES = ", ".join(
    str(cls.__struct_config__.tag)
    for cls in (
        Subscribe,
        Unsubscribe,
        Broadcast,
        PresenceJoin,
        PresenceUpdate,
        PresenceLeave,
        Refresh,
    )
)


# --- backend -> gateway (POST /api/event) -------------------------------------------------------


class EventBody(msgspec.Struct, forbid_unknown_fields=False):
    channel: str
    event: str = "message"
    payload: msgspec.Raw = NULL


_event_decoder = msgspec.json.Decoder(EventBody)


def decode_event(
    body: bytes, max_depth: int = DEFAULT_MAX_DEPTH, max_event_name: int = 0
) -> EventBody:
    """Decode the HTTP API's event body, or raise :class:`FrameError` saying what is wrong."""
    check_depth(body, max_depth)
    try:
        event = _event_decoder.decode(body)
    except RecursionError:
        raise FrameError("invalid_json", "JSON nests too deeply") from None
    except msgspec.ValidationError as exc:
        raise FrameError("invalid_event", f"invalid event: {exc}") from None
    except msgspec.DecodeError:
        raise FrameError("invalid_json", "body is not valid JSON") from None
    if not event.channel or len(event.channel) > MAX_CHANNEL_LENGTH:
        raise FrameError("invalid_event", f"channel must be 1 to {MAX_CHANNEL_LENGTH} characters")
    if event.channel.startswith(RESERVED_PREFIX):
        raise FrameError("invalid_event", RESERVED_MESSAGE)
    if max_event_name and len(event.event) > max_event_name:
        raise FrameError("invalid_event", f"event must be at most {max_event_name} characters")
    return event


# --- gateway -> client -------------------------------------------------------------------------


class Member(msgspec.Struct):
    """One present user, as stored in ``presence:<channel>`` and listed in ``presence_sync``."""

    user_id: str
    meta: Meta = msgspec.field(default_factory=dict)
    updated_at: int = 0


class BroadcastOut(msgspec.Struct, tag_field="type", tag="broadcast", omit_defaults=True):
    channel: str
    event: str
    payload: msgspec.Raw
    user_id: str = ""
    ts: int = 0
    # Extension, history channels only: the broadcast's place in the channel's history.
    offset: int = 0
    epoch: str = ""


class Subscribed(msgspec.Struct, tag_field="type", tag="subscribed", omit_defaults=True):
    """Extension: the answer to a subscribe with ``since`` or ``history``, sent before the
    replayed broadcasts: the channel's position they lead up to, and (with ``since``) whether
    every broadcast after it is replayed (``recovered``)."""

    channel: str
    offset: int
    epoch: str
    recovered: bool | None = None


class Publication(msgspec.Struct, omit_defaults=True):
    """One broadcast of a history page."""

    offset: int
    event: str
    payload: msgspec.Raw
    user_id: str = ""
    ts: int = 0


class HistoryOut(msgspec.Struct, tag_field="type", tag="history"):
    """Extension: the answer to a ``history`` frame (before its ``ack``): the fields of
    ``GET /api/history``'s page, and the request's ``ref``."""

    channel: str
    offset: int
    epoch: str
    first: int
    publications: list[Publication]
    next: int | None
    ref: Ref = None


class PresenceOut(msgspec.Struct, omit_defaults=True):
    type: str
    channel: str
    user_id: str
    meta: Meta = msgspec.field(default_factory=dict)
    updated_at: int = 0
    ts: int = 0
    seq: int = 0  # extension: the channel's version after this event; 0 from a seed gateway


class PresenceSync(msgspec.Struct, tag_field="type", tag="presence_sync", omit_defaults=True):
    channel: str
    users: list[Member]
    # Extensions: the channel's version this listing is exact at; a chunked sync (asked for
    # with ``presence_chunk``) numbers its frames ``chunk`` 1..``chunks``, all of one version.
    version: int
    chunk: int = 0
    chunks: int = 0


class PresenceDiff(msgspec.Struct, tag_field="type", tag="presence_diff"):
    """Extension: the presence events ``from_seq``..``seq`` folded into one frame.

    ``joins`` are members present (joined or updated) after them, ``leaves`` users gone."""

    channel: str
    joins: list[Member]
    leaves: list[str]
    from_seq: int
    seq: int


class ErrorOut(msgspec.Struct, tag_field="type", tag="error", omit_defaults=True):
    code: str
    message: str
    channel: str | None = None
    ref: Ref = None


class Ack(msgspec.Struct, tag_field="type", tag="ack", omit_defaults=True):
    ref: Ref
    # Extension: a broadcast stored in a history channel's history, at this position.
    offset: int = 0
    epoch: str = ""


# --- between gateways (the bus) ----------------------------------------------------------------


class BusMeta(msgspec.Struct, omit_defaults=True):
    user_id: str = ""
    meta: Meta | None = None
    updated_at: int = 0


class BusMessage(msgspec.Struct, omit_defaults=True):
    """The seed's BusMessage: ``meta`` is always written, empty ``user_id``/``event``/``payload``
    are omitted; a decoder accepts both forms."""

    type: str
    channel_id: str
    user_id: str = ""
    event: str = ""
    payload: msgspec.Raw = NULL
    meta: BusMeta = msgspec.field(default_factory=BusMeta)
    ts: int = 0
    seq: int = 0  # presence events only: the channel's version after the event (extension)
    offset: int = 0  # history channels only: the broadcast's offset (extension)
    # With seq or offset: changes when the store lost its state and the count restarted.
    epoch: str = ""


PRESENCE_TYPES = frozenset({"presence_join", "presence_update", "presence_leave"})

_encoder = msgspec.json.Encoder()
_bus_decoder = msgspec.json.Decoder(BusMessage)
_member_decoder = msgspec.json.Decoder(Member)
encode = _encoder.encode
decode_member = _member_decoder.decode


def decode_bus(data: bytes) -> BusMessage:
    """Decode a bus message; raises ``msgspec.DecodeError``/``ValidationError`` on garbage."""
    return _bus_decoder.decode(data)


def bus_broadcast(channel: str, event: str, payload: msgspec.Raw, user_id: str = "") -> bytes:
    return encode(
        BusMessage("broadcast", channel, user_id=user_id, event=event, payload=payload, ts=now_ms())
    )


def bus_presence(kind: str, channel: str, member: Member) -> bytes:
    meta = BusMeta(member.user_id, member.meta or None, member.updated_at)
    return encode(BusMessage(kind, channel, user_id=member.user_id, meta=meta, ts=now_ms()))


def bus_presence_body(channel: str, member: Member) -> bytes:
    """A presence bus message without its ``type`` and closing brace, for the presence store
    to complete once it has decided the type and the sequence number (``complete_presence``).
    """
    data = bus_presence("", channel, member)
    assert data.startswith(_EMPTY_TYPE) and data.endswith(b"}")
    return data[len(_EMPTY_TYPE) : -1]


_EMPTY_TYPE = b'{"type":"",'


def complete_presence(kind: str, body: bytes, seq: int, epoch: str) -> bytes:
    """The bus message for ``body`` (from ``bus_presence_body``) as event ``kind`` number
    ``seq`` of ``epoch``; the Redis scripts build the same bytes in Lua."""
    return b'{"type":"%s",%s,"seq":%d,"epoch":%s}' % (kind.encode(), body, seq, encode(epoch))


def client_frame(message: BusMessage) -> Outgoing:
    """The frame every local subscriber gets for a bus message, encoded once."""
    if message.type == "broadcast":
        out: msgspec.Struct = BroadcastOut(
            message.channel_id,
            message.event or "message",
            message.payload,
            message.user_id,
            message.ts,
            message.offset,
            message.epoch if message.offset else "",
        )
    else:
        meta = message.meta
        out = PresenceOut(
            message.type,
            message.channel_id,
            message.user_id or meta.user_id,
            meta.meta or {},
            meta.updated_at,
            message.ts,
            message.seq,
        )
    return Outgoing(encode(out))


def error_frame(code: str, message: str, channel: str | None = None, ref: Ref = None) -> Outgoing:
    return Outgoing(encode(ErrorOut(code, message, channel, ref)))


def refusal(error: FrameError, ref: Ref = None) -> Outgoing:
    """The error frame that answers a client frame the gateway refused."""
    return error_frame(error.code, error.message, error.channel, ref)


def ack_frame(ref: Ref, offset: int = 0, epoch: str = "") -> Outgoing:
    return Outgoing(encode(Ack(ref, offset, epoch)))


def subscribed_frame(channel: str, offset: int, epoch: str, recovered: bool | None) -> Outgoing:
    return Outgoing(encode(Subscribed(channel, offset, epoch, recovered)))


def sync_frame(
    channel: str, members: list[Member], version: int, chunk: int = 0, chunks: int = 0
) -> Outgoing:
    return Outgoing(encode(PresenceSync(channel, members, version, chunk, chunks)))


def diff_frame(
    channel: str, joins: list[Member], leaves: list[str], from_seq: int, seq: int
) -> Outgoing:
    return Outgoing(encode(PresenceDiff(channel, joins, leaves, from_seq, seq)))
