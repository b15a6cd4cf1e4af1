"""How a (kind, channel, payload) rides on one Kafka record.

The payload is the record's value, untouched (brokers move bytes). The channel is the key, so
every message of a channel lands on one partition and keeps its order. Kind and channel also
travel as headers, which is what a receiver reads: a record without them (written by someone
else onto the topic) is skipped, never guessed at.
"""

from __future__ import annotations

from collections.abc import Sequence

from realtime.wire.messages import KINDS, Kind

VERSION = b"1"
H_VERSION = "realtime-v"
H_KIND = "realtime-kind"
H_CHANNEL = "realtime-channel"

Headers = list[tuple[str, bytes]]


def key(channel: str) -> bytes:
    return channel.encode("utf-8", "surrogatepass")


def headers(kind: Kind, channel: str) -> Headers:
    return [
        (H_VERSION, VERSION),
        (H_KIND, kind.encode("ascii")),
        (H_CHANNEL, key(channel)),
    ]


def target(record_headers: Sequence[tuple[str, bytes]] | None) -> tuple[Kind, str] | None:
    """The (kind, channel) a record is for, or None when it is not one of ours."""
    if not record_headers:
        return None
    found = dict(record_headers)
    if found.get(H_VERSION) != VERSION:
        return None
    raw_kind, raw_channel = found.get(H_KIND), found.get(H_CHANNEL)
    if raw_kind is None or raw_channel is None:
        return None
    kind = next((k for k in KINDS if k.encode("ascii") == raw_kind), None)
    if kind is None:
        return None
    try:
        channel = raw_channel.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return None
    return kind, channel
