"""``GET /api/history?channel=&since=&limit=``: a page of a history channel's broadcasts,
authenticated as ``POST /api/event`` is (with ``API_KEYS``, a key allowed on the channel)."""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from realtime.errors import HistoryError
from realtime.history.base import History
from realtime.history.pages import MAX_SINCE, read_page
from realtime.wire.messages import MAX_CHANNEL_LENGTH

HISTORY_FAILED = "the history store is unavailable right now; try again"

_encode = msgspec.json.Encoder().encode


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _whole(request: Request, name: str, default: int, high: int | None = None) -> int:
    """A whole-number parameter; above ``high``: 400 (None: no bound)."""
    text = request.query_params.get(name)
    if text is None or text == "":
        return default
    if not text.isascii() or not text.isdigit() or len(text) > 20:
        raise ValueError(f"{name} must be a whole number")
    value = int(text)
    if high is not None and value > high:
        raise ValueError(f"{name} must be a whole number from 0 to {high}")
    return value


async def read_history(request: Request, history: History | None) -> Response:
    channel = request.query_params.get("channel", "")
    if not channel or len(channel) > MAX_CHANNEL_LENGTH:
        return _error(400, f"channel must be 1 to {MAX_CHANNEL_LENGTH} characters")
    if history is None or channel not in history.channels:
        return _error(404, "this channel keeps no history (HISTORY_CHANNELS)")
    try:
        since = _whole(request, "since", 0, MAX_SINCE)
        # 0 or more than the history holds: as much as one page gives.
        limit = _whole(request, "limit", 0)
    except ValueError as exc:
        return _error(400, str(exc))
    try:
        page = await read_page(history, channel, since, limit)
    except HistoryError:
        return _error(503, HISTORY_FAILED)
    return Response(_encode(page), media_type="application/json")
