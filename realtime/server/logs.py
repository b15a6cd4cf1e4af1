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

With LOG_FORMAT=json, :class:`JsonFormatter` writes every record as one JSON object a line.
"""

from __future__ import annotations

import contextvars
import datetime
import json
import logging
import re
from typing import Any

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


# The attributes every LogRecord has: anything else on a record came from ``extra=`` and is
# written as its own key by :class:`JsonFormatter`.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    """LOG_FORMAT=json: one JSON object per line: ``ts`` (ISO 8601, UTC), ``level``,
    ``logger``, ``message``, then the record's ``extra`` fields (``user``, ``instance``,
    ``code``, ``duration`` on the connection lines), and ``exc`` for a traceback. Token values
    are redacted in the message and in every string field, as in text lines."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in entry:
                entry[key] = redact(value) if isinstance(value, str) else value
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, default=str, ensure_ascii=False)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure(level: str, log_format: str) -> None:
    """The root handler, in text or JSON, once per process: ``realtime serve`` calls it, and so
    does each ``--workers`` process (a fresh interpreter that inherits no handler)."""
    root = logging.getLogger()
    root.setLevel(level.upper())
    if any(getattr(h, "realtime", False) for h in root.handlers):
        return
    handler = logging.StreamHandler()
    handler.realtime = True  # type: ignore[attr-defined]
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root.addHandler(handler)
