"""The server API: what a backend asks of or does to the whole cluster (docs/server-api.md).

Authenticated as ``POST /api/event`` is, with one difference: without ``API_KEYS`` it is off
(403), not open. A key
with channel patterns acts only on channels it allows: ``/api/channels`` lists only those,
``/api/presence`` and ``/api/unsubscribe`` refuse others with 403, and ``/api/disconnect``
(which reaches every channel a user is in) needs a key without patterns.
"""

from __future__ import annotations

from typing import Annotated, TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from realtime import metrics
from realtime.apikeys import ApiKey
from realtime.config import Settings
from realtime.engine.control import Request as ControlRequest
from realtime.engine.node import Node
from realtime.errors import BrokerError, FrameError, PresenceError
from realtime.server.bodies import BodyTooLarge, read_capped
from realtime.server.keys import key_or_refusal
from realtime.wire.messages import MAX_CHANNEL_LENGTH, RESERVED_PREFIX, decode_event

T = TypeVar("T")
MAX_PAGE = 1000
DEFAULT_PAGE = 100
MAX_BATCH = 100
DEFAULT_CLOSE_CODE = 4000
BROKER_FAILED = "the message queue did not take the request; try again"
PRESENCE_FAILED = "presence is unavailable right now; try again"

User = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
Channel = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_CHANNEL_LENGTH)]


class DisconnectBody(msgspec.Struct, forbid_unknown_fields=True):
    user: User
    # 4000-4999: the application's own close codes (RFC 6455 7.4.2); the gateway's own 40xx
    # meanings (docs/protocol.md) are the caller's to reuse or avoid.
    code: Annotated[int, msgspec.Meta(ge=4000, le=4999)] = DEFAULT_CLOSE_CODE
    # A close frame's reason is at most 123 bytes of UTF-8.
    reason: Annotated[str, msgspec.Meta(max_length=60)] = "disconnected by the server"


class UnsubscribeBody(msgspec.Struct, forbid_unknown_fields=True):
    user: User
    channel: Channel


class BatchBody(msgspec.Struct, forbid_unknown_fields=True):
    events: Annotated[list[msgspec.Raw], msgspec.Meta(min_length=1, max_length=MAX_BATCH)]


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _bad_body(exc: Exception) -> str:
    if isinstance(exc, msgspec.ValidationError):
        return f"invalid body: {exc}"
    return "body is not valid JSON"


def server_api_routes(node: Node, settings: Settings) -> list[Route]:
    api_keys = settings.api_keys

    def key_of(request: Request) -> tuple[ApiKey | None, JSONResponse | None]:
        """(the key, None), or (None, the refusal)."""
        if not api_keys:
            # Closed rather than open: this API kicks users and lists every channel, and the
            # seed had none, so no seed deployment depends on it being open.
            return None, _error(403, "the server API is off: set API_KEYS to use it")
        key = key_or_refusal(request, api_keys)
        if isinstance(key, JSONResponse):
            return None, key
        return key, None

    async def body_of(request: Request, kind: type[T]) -> T | JSONResponse:
        media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if settings.http_require_json and media_type != "application/json":
            return _error(415, "the body must be JSON, sent as content-type: application/json")
        try:
            data = await read_capped(request, settings.http_max_body_bytes)
        except BodyTooLarge as exc:
            return _error(413, str(exc))
        try:
            return msgspec.json.decode(data, type=kind)
        except msgspec.MsgspecError as exc:
            return _error(400, _bad_body(exc))

    def channel_param(request: Request) -> str | JSONResponse:
        channel = request.query_params.get("channel", "")
        if not channel or len(channel) > MAX_CHANNEL_LENGTH:
            return _error(400, f"channel must be 1 to {MAX_CHANNEL_LENGTH} characters")
        if channel.startswith(RESERVED_PREFIX):
            return _error(400, f"channel names starting with {RESERVED_PREFIX!r} are reserved")
        return channel

    async def channels(request: Request) -> Response:
        key, refused = key_of(request)
        if refused is not None:
            return refused
        params = request.query_params
        pattern, cursor = params.get("pattern", ""), params.get("cursor", "")
        text = params.get("limit", "")
        if text and (not text.isascii() or not text.isdigit() or not 1 <= int(text) <= MAX_PAGE):
            return _error(400, f"limit must be a whole number from 1 to {MAX_PAGE}")
        if len(pattern) > MAX_CHANNEL_LENGTH or len(cursor) > MAX_CHANNEL_LENGTH:
            return _error(400, f"pattern and cursor are at most {MAX_CHANNEL_LENGTH} characters")
        limit = int(text) if text else DEFAULT_PAGE
        try:
            gathered = await node.control.ask(
                ControlRequest("channels", "", pattern=pattern, cursor=cursor, limit=limit)
            )
        except BrokerError:
            return _error(503, BROKER_FAILED)
        counts: dict[str, int] = {}
        for reply in gathered.replies:
            for channel, count in reply.channels.items():
                counts[channel] = counts.get(channel, 0) + count
        page = sorted(counts)[:limit]
        listed = [
            {"channel": channel, "subscribers": counts[channel]}
            for channel in page
            if key is None or key.allows(channel)
        ]
        return JSONResponse(
            {
                "channels": listed,
                # A full page: there may be more after its last name.
                "next": page[-1] if len(page) == limit else None,
                "instances": gathered.instances,
                "complete": gathered.complete,
            }
        )

    async def presence(request: Request) -> Response:
        key, refused = key_of(request)
        if refused is not None:
            return refused
        channel = channel_param(request)
        if isinstance(channel, JSONResponse):
            return channel
        if key is not None and not key.allows(channel):
            return _error(403, "this API key may not read this channel")
        try:
            snapshot = await node.store.sync(channel)
        except PresenceError:
            return _error(503, PRESENCE_FAILED)
        if request.url.path.endswith("/stats"):
            return JSONResponse(
                {"channel": channel, "users": len(snapshot.members), "version": snapshot.version}
            )
        members = msgspec.to_builtins(snapshot.members)
        return JSONResponse(
            {
                "channel": channel,
                "version": snapshot.version,
                "epoch": snapshot.epoch,
                "members": members,
            }
        )

    async def acted(request: ControlRequest) -> Response:
        """Ask every instance to act on its connections; answer how many it changed."""
        try:
            gathered = await node.control.ask(request)
        except BrokerError:
            return _error(503, BROKER_FAILED)
        return JSONResponse(
            {
                "status": "ok",
                "connections": sum(r.count for r in gathered.replies),
                "instances": gathered.instances,
                "complete": gathered.complete,
            }
        )

    async def disconnect(request: Request) -> Response:
        key, refused = key_of(request)
        if refused is not None:
            return refused
        if key is not None and key.patterns:
            return _error(403, "disconnecting a user needs an API key without channel patterns")
        body = await body_of(request, DisconnectBody)
        if isinstance(body, JSONResponse):
            return body
        return await acted(
            ControlRequest("disconnect", "", user=body.user, code=body.code, reason=body.reason)
        )

    async def unsubscribe(request: Request) -> Response:
        key, refused = key_of(request)
        if refused is not None:
            return refused
        body = await body_of(request, UnsubscribeBody)
        if isinstance(body, JSONResponse):
            return body
        if body.channel.startswith(RESERVED_PREFIX):
            return _error(400, f"channel names starting with {RESERVED_PREFIX!r} are reserved")
        if key is not None and not key.allows(body.channel):
            return _error(403, "this API key may not act on this channel")
        return await acted(ControlRequest("unsubscribe", "", user=body.user, channel=body.channel))

    async def batch(request: Request) -> Response:
        key, refused = key_of(request)
        if refused is not None:
            return refused
        body = await body_of(request, BatchBody)
        if isinstance(body, JSONResponse):
            return body
        events = []
        # Every event is checked before any is published: a refused batch publishes nothing.
        for index, raw in enumerate(body.events):
            try:
                event = decode_event(
                    bytes(raw), settings.json_max_depth, settings.event_name_max_length
                )
            except FrameError as exc:
                return _error(400, f"events[{index}]: {exc.message}")
            if key is not None and not key.allows(event.channel):
                return _error(403, f"events[{index}]: this API key may not publish to this channel")
            events.append(event)
        results: list[dict[str, object]] = []
        for event in events:
            try:
                position = await node.publish(event.channel, event.event, event.payload)
            except FrameError as exc:
                results.append({"channel": event.channel, "status": "error", "error": exc.message})
                continue
            # Counted as the broadcasts they are, as POST /api/event's: one per event published.
            metrics.HTTP_PUBLISHES.inc()
            result: dict[str, object] = {"channel": event.channel, "status": "ok"}
            if position is not None:
                result["offset"], result["epoch"] = position
            results.append(result)
        return JSONResponse({"results": results})

    return [
        Route("/api/channels", channels),
        Route("/api/presence", presence),
        Route("/api/presence/stats", presence),
        Route("/api/disconnect", disconnect, methods=["POST"]),
        Route("/api/unsubscribe", unsubscribe, methods=["POST"]),
        Route("/api/batch", batch, methods=["POST"]),
    ]
