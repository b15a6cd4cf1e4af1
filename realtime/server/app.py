"""create_app(settings) -> the gateway's ASGI app: HTTP routes, /ws, and the lifespan
(``lifespan.py``) that starts and stops the node."""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os

import msgspec
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.datastructures import State
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from realtime import metrics
from realtime.apikeys import ApiKey, find_key, presented_key
from realtime.backends import build_node
from realtime.config import Settings
from realtime.errors import FrameError, HistoryError
from realtime.history.idempotency import BadKey, check_key, entry_name, fingerprint
from realtime.server import logs
from realtime.server.bodies import BodyTooLarge, read_capped
from realtime.server.drain import ClosingHttp, Drain
from realtime.server.history_api import read_history
from realtime.server.keys import key_or_refusal
from realtime.server.lifespan import Lifespan
from realtime.server.openapi import OPENAPI
from realtime.server.playground import playground_routes
from realtime.server.server_api import server_api_routes
from realtime.server.static import client_routes
from realtime.server.websocket import WebSocketEndpoint
from realtime.wire.messages import decode_event

log = logging.getLogger("realtime")


IDEMPOTENCY_FAILED = "the idempotency key store is unavailable right now; try again"


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def message_id() -> str:
    """A random UUID version 4 as 32 hex digits, what ``uuid.uuid4().hex`` gives, built without
    the UUID object: a third of its cost, once per HTTP publish (docs/benchmarks.md)."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    return raw.hex()


def create_app(settings: Settings, freeze_gc: bool = False) -> RealtimeApp:
    """The gateway's ASGI app. ``freeze_gc`` (set by ``realtime serve``) moves everything alive
    after start-up out of the collector's reach: a full collection then scans only what
    connections create, which keeps its pause (and the fan-out's tail latency) short."""
    node = build_node(settings)
    drain = Drain(settings.shutdown_drain_seconds)
    logs.install()

    api_keys = settings.api_keys

    async def post_event(request: Request) -> Response:
        key: ApiKey | None = None
        if api_keys:
            found = key_or_refusal(request, api_keys)
            if isinstance(found, JSONResponse):
                return found
            key = found
        retry_key = request.headers.get("idempotency-key")
        if retry_key is not None:
            try:
                check_key(retry_key)
            except BadKey as exc:
                return error(400, str(exc))
        # JSON only: a browser's cross-site "simple" POST (text/plain, form encodings) is sent
        # without a CORS preflight, so accepting it would let any page publish.
        media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if settings.http_require_json and media_type != "application/json":
            return error(415, "the body must be JSON, sent as content-type: application/json")
        try:
            body = await read_capped(request, settings.http_max_body_bytes)
        except BodyTooLarge as exc:
            return error(413, str(exc))
        except ClientDisconnect:
            # The client closed its connection before its whole body arrived (or before it was
            # read: a busy instance reads late): nothing is published, and no one is left to
            # answer (uvicorn drops this response). Starlette's default was an "Exception in
            # ASGI application" traceback, an ERROR for something the client did.
            log.info("POST /api/event: the client closed before its body was read")
            return error(400, "the request body did not arrive whole")
        try:
            event = decode_event(body, settings.json_max_depth, settings.event_name_max_length)
        except FrameError as exc:
            return error(400, exc.message)
        if key is not None and not key.allows(event.channel):
            return error(403, "this API key may not publish to this channel")
        keys = node.idempotency
        name = mark = ""
        if retry_key is not None and keys is not None:
            # Scoped by the API key: two publishers' keys never collide.
            name = entry_name(key.secret if key is not None else "", retry_key)
            mark = fingerprint(body)
            try:
                seen = await keys.claim(name, mark)
            except HistoryError as exc:
                log.warning("idempotency claim failed: %s", exc)
                return error(503, IDEMPOTENCY_FAILED)
            if seen is not None:
                if seen.fingerprint != mark:
                    return error(422, "this Idempotency-Key was sent with another body")
                if seen.answer is None:
                    return JSONResponse(
                        {"error": "a request with this Idempotency-Key is still running"},
                        status_code=409,
                        headers={"retry-after": "1"},
                    )
                # Published already: the first answer again, nothing published.
                return Response(
                    seen.answer,
                    media_type="application/json",
                    headers={"idempotent-replayed": "true"},
                )
        try:
            position = await node.publish(event.channel, event.event, event.payload)
        except FrameError as exc:
            if name and keys is not None:
                # Not published: a retry may try again (else the claim ends by itself).
                with contextlib.suppress(HistoryError):
                    await keys.release(name)
            return error(413 if exc.code == "message_too_large" else 503, exc.message)
        metrics.HTTP_PUBLISHES.inc()
        # The id is the HTTP API's alone: WebSocket broadcasts need none, so none is made there.
        answer: dict[str, object] = {"status": "ok", "message_id": message_id()}
        if position is not None:
            # A history channel: stored at this position before the answer.
            answer["offset"], answer["epoch"] = position
        encoded = msgspec.json.encode(answer)
        if name and keys is not None:
            try:
                await keys.answer(name, mark, encoded)
            except HistoryError as exc:
                # Published: answer it. A retry after the claim's end would publish again.
                log.warning("idempotency answer not kept: %s", exc)
        return Response(encoded, media_type="application/json")

    def authorised(request: Request, channel: str) -> JSONResponse | None:
        """None when the request may use ``channel``, else the refusal (as /api/event's)."""
        if not api_keys:
            return None
        found = key_or_refusal(request, api_keys)
        if isinstance(found, JSONResponse):
            return found
        if not found.allows(channel):
            return error(403, "this API key may not read this channel")
        return None

    async def get_history(request: Request) -> Response:
        refused = authorised(request, request.query_params.get("channel", ""))
        if refused is not None:
            return refused
        return await read_history(request, node.history)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "connections": node.connections})

    async def readyz(request: Request) -> Response:
        # Red while a broker says it is down, its probe failed or is overdue, or the presence
        # store does not answer (realtime/engine/liveness.py has the bounds).
        status = {name: broker.ready for name, broker in node.brokers.items()}
        # Draining comes first: the balancer must stop sending here whatever the backends say.
        if drain.draining:
            return JSONResponse({"status": "draining", "subscribers": status}, status_code=503)
        ready = all(status.values()) and node.liveness.healthy
        return JSONResponse(
            {
                "status": "ready" if ready else "not ready",
                "subscribers": status,
                **node.liveness.report(),
            },
            status_code=200 if ready else 503,
        )

    async def get_metrics(request: Request) -> Response:
        if settings.metrics == "off":
            return error(404, "metrics are off (METRICS=off)")
        # A browser on this host is on loopback too: a page of any site could read the
        # metrics through it (CORS allows every origin by default). Browsers always send
        # Origin on a cross-origin request and scrapers never do, so one with Origin needs a key.
        local = _loopback(request) and "origin" not in request.headers
        if settings.metrics == "local" and not local:
            presented = presented_key(request.headers)
            if not api_keys or presented is None or find_key(api_keys, presented) is None:
                # The same answer with or without keys configured: says nothing about them.
                return error(
                    403,
                    "/metrics answers loopback clients and API key holders (METRICS=local)",
                )
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    async def openapi(request: Request) -> Response:
        return JSONResponse(OPENAPI)

    websocket = WebSocketEndpoint(node, settings, drain)
    routes = [
        Route("/api/event", post_event, methods=["POST"]),
        Route("/api/history", get_history),
        *server_api_routes(node, settings),
        Route("/openapi.json", openapi),
        Route("/healthz", healthz),
        Route("/metrics", get_metrics),
        Route("/readyz", readyz),
        # /ws without an upgrade: why an upgrade would be refused (the browser client asks).
        Route("/ws", websocket.upgrade_check, methods=["GET", "POST"]),
        *client_routes(),
        *playground_routes(settings),
    ]
    middleware = [
        Middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            # GET too: the playground opened from another origin reads the server API with an
            # API key header, which a browser sends only after a preflight. No CSRF risk: a
            # GET changes nothing, and the key is the caller's own, never sent by the browser
            # unasked. No credentials: cookies stay out (allow_credentials is False).
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["*"],
            allow_credentials=False,
        )
    ]
    http = Starlette(routes=routes, middleware=middleware)
    http.state.node = node
    http.state.settings = settings
    http.state.drain = drain
    return RealtimeApp(
        ClosingHttp(http, drain),
        websocket,
        Lifespan(node, settings, freeze_gc, drain),
        http.state,
    )


def _loopback(request: Request) -> bool:
    """The client (as TRUSTED_PROXIES resolved it) is this host."""
    if request.client is None:
        return False
    try:
        return ipaddress.ip_address(request.client.host).is_loopback
    except ValueError:
        return False


class RealtimeApp:
    """``/ws`` goes straight to the WebSocket endpoint, the lifespan to :class:`Lifespan`,
    everything else (HTTP) to Starlette. A connection then keeps no routing or middleware
    frames alive."""

    def __init__(
        self,
        http: ClosingHttp,
        websocket: WebSocketEndpoint,
        lifespan: Lifespan,
        state: State,
    ) -> None:
        self.http = http
        self.websocket = websocket
        self.lifespan = lifespan
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and scope["path"] == "/ws":
            await self.websocket(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self.lifespan(scope, receive, send)
        else:
            await self.http(scope, receive, send)
