"""The naive hub the benchmark compares against.

One dict of channel -> set of WebSockets, one `await ws.send_text` per
subscriber per broadcast. No queues, no backpressure handling, no presence.
Run: `uvicorn bench.baseline_hub:app --host 127.0.0.1 --port 8000`.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

channels: defaultdict[str, set[WebSocket]] = defaultdict(set)


async def publish(channel: str, event: str, payload: Any, user_id: str | None) -> None:
    out: dict[str, Any] = {"type": "broadcast", "channel": channel, "event": event}
    out["payload"] = payload
    if user_id is not None:
        out["user_id"] = user_id
    out["ts"] = int(time.time() * 1000)
    text = json.dumps(out, separators=(",", ":"))
    for ws in list(channels.get(channel, ())):
        try:
            await ws.send_text(text)
        except Exception:  # a subscriber that went away; its own handler cleans up
            channels[channel].discard(ws)


async def ws_endpoint(ws: WebSocket) -> None:
    user_id = ws.query_params.get("user_id", "anonymous")
    await ws.accept()
    mine: set[str] = set()
    try:
        while True:
            msg = json.loads(await ws.receive_text())
            kind, channel = msg.get("type"), msg.get("channel", "")
            if kind == "subscribe":
                channels[channel].add(ws)
                mine.add(channel)
            elif kind == "broadcast":
                await publish(channel, msg.get("event", "message"), msg.get("payload"), user_id)
    except WebSocketDisconnect:
        pass
    finally:
        for channel in mine:
            channels[channel].discard(ws)
            if not channels[channel]:
                del channels[channel]


async def http_event(request: Request) -> JSONResponse:
    body = await request.json()
    await publish(body["channel"], body.get("event", "message"), body.get("payload"), None)
    return JSONResponse({"status": "ok"})


app = Starlette(
    routes=[
        WebSocketRoute("/ws", ws_endpoint),
        Route("/api/event", http_event, methods=["POST"]),
    ]
)
