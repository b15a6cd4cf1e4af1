"""Keep tokens out of uvicorn's log lines.

uvicorn logs every WebSocket upgrade at INFO on ``uvicorn.error`` (whatever ``access_log``
says) as ``<client> - "WebSocket /ws?<query>" <status>``: the query string would carry
``?token=`` / ``?access_token=``. This filter rewrites those values before any handler sees the
record.
"""

from __future__ import annotations

import logging
import re

SECRET_PARAMS = re.compile(r"((?:^|[?&])(?:access_token|token)=)[^&\s\"]*", re.IGNORECASE)
LOGGERS = ("uvicorn.error", "uvicorn.access")


def redact(text: str) -> str:
    return SECRET_PARAMS.sub(r"\1[redacted]", text)


class RedactTokens(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
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
