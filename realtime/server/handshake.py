"""uvicorn's httptools protocol with the limits it lacks: a deadline for the request's headers
(slowloris), and 414/431 for an oversized request line or header block.

uvicorn starts no timer before a request's headers are complete, and hands an upgrade's
headers to websockets, whose parser stops answering (the socket stays open) on a line over
8 KiB. Here both are answered before either parser sees them. This module and direct.py are
the only ones touching uvicorn's internals; :func:`guarded_protocol` checks at start-up that
the hooks it overrides are there.

Each request, and the next one of a pipelined connection when it is about to be served,
counts as arriving input (``realtime.activity``): a write pass pending meanwhile waits for its
broadcast (``direct.Flusher``).

At shutdown (after the drain, ``drain.py``) a connection between requests is not cut at once:
a request already on its way is answered first (:meth:`GuardedHttpToolsProtocol.shutdown`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from realtime.activity import arrived

log = logging.getLogger("realtime.server.handshake")

# One header line longer than this makes websockets' handshake parser wait forever.
MAX_HEADER_LINE = 8190
MAX_HEADERS = 100
# At shutdown, how long a connection between requests may still send one (answered, then
# closed): what a request already on its way needs to arrive.
LAST_REQUEST_SECONDS = 0.5
_HOOKS = ("connection_made", "connection_lost", "on_message_begin", "on_url", "on_header",
          "on_headers_complete", "on_response_complete", "send_400_response", "shutdown",
          "transport")  # fmt: skip
_REASONS = {408: b"Request Timeout", 414: b"URI Too Long", 431: b"Request Header Fields Too Large"}


class _Rejected(Exception):
    """Raised from a parser callback; httptools turns it into a parser error, on which
    uvicorn calls send_400_response, which sends our status instead."""


@dataclass(frozen=True)
class HandshakeLimits:
    handshake_timeout: float = 10.0
    max_request_line: int = 8190
    max_header_bytes: int = 16384


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, limits: HandshakeLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.handshake_timeout = limits.handshake_timeout
        self.max_request_line = limits.max_request_line
        self.max_header_bytes = limits.max_header_bytes
        self._deadline: asyncio.TimerHandle | None = None
        self._header_bytes = 0
        self._header_count = 0
        self._rejection = 400
        self._last_call: asyncio.TimerHandle | None = None
        self._stopping = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._hang_up()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._deadline is None:
            self._deadline = self.loop.call_later(self.handshake_timeout, self._timed_out)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _timed_out(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            log.debug("request headers not received in %.0f s: closing", self.handshake_timeout)
            self._respond(408, "request headers took too long")

    def on_message_begin(self) -> None:
        # A request may publish: a delivery pass about to start waits for it (direct.Flusher).
        arrived()
        super().on_message_begin()
        self._header_bytes = 0
        self._header_count = 0
        # Each request on a kept-alive connection gets the same deadline for its headers.
        self._arm()

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > self.max_request_line:
            self._rejection = 414
            raise _Rejected

    def on_header(self, name: bytes, value: bytes) -> None:
        size = len(name) + len(value) + 4  # ": " and CRLF
        self._header_bytes += size
        self._header_count += 1
        if (
            size > MAX_HEADER_LINE
            or self._header_bytes > self.max_header_bytes
            or self._header_count > MAX_HEADERS
        ):
            self._rejection = 431
            raise _Rejected
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._disarm()
        self._hang_up()
        super().on_headers_complete()
        if self._stopping and self.cycle is not None:
            self.cycle.keep_alive = False  # answered, then closed

    def on_response_complete(self) -> None:
        if getattr(self, "pipeline", None):
            # The next pipelined request is served in the next loop iteration: the pending
            # delivery pass waits for it too, so a pipelined stream goes out in batches.
            arrived()
        super().on_response_complete()

    def shutdown(self) -> None:
        """uvicorn closes a connection that is between requests at once, after it stopped
        listening: a request already on its way (a client that has just connected, or reused a
        kept-alive connection) gets a closed connection and no answer. Such a connection gets
        :data:`LAST_REQUEST_SECONDS` to send one, which is answered and the connection closed;
        uvicorn's shutdown waits for it (bounded by its graceful timeout)."""
        if self.cycle is None or self.cycle.response_complete:
            self._stopping = True
            if self._last_call is None and not self.transport.is_closing():
                self._last_call = self.loop.call_later(LAST_REQUEST_SECONDS, self._close_idle)
            return
        super().shutdown()

    def _close_idle(self) -> None:
        self._last_call = None
        if self.cycle is None or self.cycle.response_complete:
            self.transport.close()

    def _hang_up(self) -> None:
        if self._last_call is not None:
            self._last_call.cancel()
            self._last_call = None

    def send_400_response(self, msg: str) -> None:
        if self._rejection == 400:
            super().send_400_response(msg)
            return
        status = self._rejection
        self._respond(status, "request line too long" if status == 414 else "headers too large")

    def _respond(self, status: int, message: str) -> None:
        body = b'{"error":"%s"}' % message.encode()
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (status, _REASONS[status], len(body), body)
        )
        self.transport.close()


def guarded_protocol(
    handshake_timeout: float, max_request_line: int, max_header_bytes: int
) -> Callable[..., GuardedHttpToolsProtocol]:
    """The protocol factory for uvicorn's ``http`` option. A partial of a module-level class,
    not a class made here: ``--workers`` pickles the option into each worker process."""
    missing = [hook for hook in _HOOKS[:-1] if not hasattr(HttpToolsProtocol, hook)]
    if missing:
        raise RuntimeError(f"uvicorn's HttpToolsProtocol lacks {missing}: pin a tested uvicorn")
    limits = HandshakeLimits(handshake_timeout, max_request_line, max_header_bytes)
    return functools.partial(GuardedHttpToolsProtocol, limits=limits)
