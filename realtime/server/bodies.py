"""Request bodies read with a cap: a body over it is refused as soon as it is known to be,
from ``Content-Length`` or while streaming, never after buffering all of it."""

from __future__ import annotations

from starlette.requests import Request


class BodyTooLarge(Exception):
    """The body is larger than ``limit`` bytes (the HTTP API answers 413)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"body is larger than {limit} bytes (HTTP_MAX_BODY_BYTES)")
        self.limit = limit


async def read_capped(request: Request, limit: int) -> bytes:
    """The whole body, or :class:`BodyTooLarge` once more than ``limit`` bytes are announced
    or have arrived (a chunked body announces nothing)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)
