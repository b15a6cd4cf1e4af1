"""The HTTP API's one answer to a request without a valid API key (``API_KEYS``)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from realtime.apikeys import ApiKey, find_key, presented_key

UNAUTHORISED = "a valid API key is required (Authorization: Bearer or X-API-Key)"


def key_or_refusal(request: Request, api_keys: tuple[ApiKey, ...]) -> ApiKey | JSONResponse:
    """The key the request presents (``Authorization: Bearer`` or ``X-API-Key``), or the 401
    that refuses it."""
    presented = presented_key(request.headers)
    key = find_key(api_keys, presented) if presented is not None else None
    if key is None:
        return JSONResponse(
            {"error": UNAUTHORISED}, status_code=401, headers={"www-authenticate": "Bearer"}
        )
    return key
