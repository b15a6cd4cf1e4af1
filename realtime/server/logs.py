"""Keep tokens out of uvicorn's log lines, and refused upgrades out of its ERROR lines.

uvicorn logs every WebSocket upgrade at INFO on ``uvicorn.error`` (whatever ``access_log``
says) as ``<client> - "WebSocket /ws?<query>" <status>``: the query string would carry
``?token=`` / ``?access_token=``. This filter rewrites those values before any handler sees the
record.

After the endpoint refuses an upgrade with an HTTP response (401, 403, 429, 503), uvicorn's
sans-I/O protocol still logs ERROR "ASGI callable returned without completing handshake"
(its handshake flag is only set on accept), so any unauthenticated client could fill the error
log. The endpoint marks the refusal in :data:`REFUSED`, a context variable: uvicorn logs that
line from the same task, right after the app returns, so the filter sees the mark and drops
the line; the refusal itself is already logged at INFO ("connection rejected").
"""

from __future__ import annotations

import contextvars
import logging
import re

SECRET_PARAMS = re.compile(r"((?:^|[?&])(?:access_token|token)=)[^&\s\"]*", re.IGNORECASE)
LOGGERS = ("uvicorn.error", "uvicorn.access")
UNFINISHED_HANDSHAKE = "ASGI callable returned without completing handshake."
#: Set by the /ws endpoint when it refused the upgrade with an HTTP response.
REFUSED: contextvars.ContextVar[bool] = contextvars.ContextVar("realtime_refused", default=False)


def redact(text: str) -> str:
    return SECRET_PARAMS.sub(r"\1[redacted]", text)


class RedactTokens(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == UNFINISHED_HANDSHAKE and REFUSED.get():
            return False  # our refusal, answered and logged at INFO: not an app error
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        if isinstance(record.msg, str) and "token=" in record.msg.lower():
            record.msg = redact(record.msg)
        return True


def install() -> None:
    """Attach the filter to uvicorn's loggers, once per process."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())
