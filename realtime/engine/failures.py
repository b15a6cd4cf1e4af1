"""What a client is told when a backend fails. The exception's own text names hosts, ports and
library internals, so it goes to the log and the client gets one of these fixed phrases."""

from __future__ import annotations

import logging

from realtime.errors import FrameError

log = logging.getLogger("realtime.engine.node")

PRESENCE_UNAVAILABLE = "presence is unavailable right now; try again"
PUBLISH_FAILED = "the message queue did not accept the publish; try again"
SUBSCRIBE_FAILED = "the message queue did not accept the subscription; try again"
HISTORY_FAILED = "the history store did not accept the publish; try again"
HISTORY_READ_FAILED = "the history store is unavailable right now; try again"


def backend_failure(code: str, message: str, channel: str, exc: Exception) -> FrameError:
    """The client's error for a failed backend call, after logging the detail."""
    log.warning("%s on %r: %s", code, channel, exc, extra={"channel": channel})
    return FrameError(code, message, channel)
