"""Peers that record what they are sent, and bus messages built as the stores build them."""

from __future__ import annotations

from typing import Any

import msgspec

from realtime.wire.frames import Outgoing
from realtime.wire.messages import (
    BusMessage,
    Member,
    bus_presence_body,
    complete_presence,
    decode_bus,
)


class RecordingPeer:
    """A connection that keeps every frame it is sent, decoded."""

    def __init__(self, user_id: str = "watcher") -> None:
        self.user_id = user_id
        self.frames: list[dict[str, Any]] = []

    def send(self, frame: Outgoing) -> None:
        self.frames.append(msgspec.json.decode(frame.data))

    def of(self, *types: str) -> list[dict[str, Any]]:
        return [frame for frame in self.frames if frame["type"] in types]

    def trace(self) -> list[tuple[str, int]]:
        """Each frame as (type, the version or seq it brings the view to)."""
        return [(f["type"], f.get("version", f.get("seq", 0))) for f in self.frames]

    def __repr__(self) -> str:
        return f"RecordingPeer({self.user_id!r})"


def event(
    channel: str, seq: int, user_id: str, kind: str = "presence_join", epoch: str = "e1"
) -> BusMessage:
    """Presence event number ``seq`` of ``epoch``, byte for byte as a store publishes it."""
    body = bus_presence_body(channel, Member(user_id, {"n": seq}, seq))
    return decode_bus(complete_presence(kind, body, seq, epoch))
