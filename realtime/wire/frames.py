"""An outgoing message, encoded once and framed once for every subscriber that gets it."""

from __future__ import annotations

import struct


def text_frame(payload: bytes) -> bytes:
    """A complete unmasked, unfragmented server->client text frame (RFC 6455, 5.2)."""
    length = len(payload)
    if length < 126:
        return bytes((0x81, length)) + payload
    if length < 65536:
        return struct.pack("!BBH", 0x81, 126, length) + payload
    return struct.pack("!BBQ", 0x81, 127, length) + payload


class Outgoing:
    """JSON bytes of one server message; its text and its WebSocket frame are built on demand,
    once, however many connections it goes to."""

    __slots__ = ("_text", "_wire", "data")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self._text: str | None = None
        self._wire: bytes | None = None

    @property
    def text(self) -> str:
        if self._text is None:
            self._text = self.data.decode()
        return self._text

    @property
    def wire(self) -> bytes:
        if self._wire is None:
            self._wire = text_frame(self.data)
        return self._wire

    def __repr__(self) -> str:
        return f"Outgoing({self.data!r})"
