"""A real HTTP receiver on 127.0.0.1 for webhook tests: checks each POST's signature as an
app's backend would, records the events, and can be told to fail."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from realtime.testing.gateway import bound_socket
from realtime.testing.waiting import wait_until_async
from realtime.webhooks.events import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify

SECRET = "webhook-test-secret-0123456789abcdef"


@dataclass
class Receiver:
    url: str
    status: int = 200  # what POSTs get; 503 plays a receiver that is down
    events: list[dict[str, Any]] = field(default_factory=list)
    posts: int = 0  # every POST, answered 2xx or not
    forged: int = 0  # POSTs whose signature did not verify
    # Events whose id came before: sent again because an instance died between the 2xx and
    # noting the delivery. A receiver drops them by id, as docs/webhooks.md tells apps to.
    duplicates: int = 0

    def of(self, channel: str) -> list[tuple[str, str | None]]:
        return [(e["name"], e.get("user_id")) for e in self.events if e["channel"] == channel]

    async def wait_for(self, channel: str, count: int, timeout: float = 15) -> None:
        await wait_until_async(
            lambda: len(self.of(channel)) >= count,
            timeout=timeout,
            message=f"{count} events of {channel}, got {self.of(channel)}",
        )


@contextlib.asynccontextmanager
async def receiver(secret: str = SECRET) -> AsyncIterator[Receiver]:
    sock = bound_socket()
    state = Receiver(f"http://127.0.0.1:{sock.getsockname()[1]}/hooks")

    async def hooks(request: Request) -> JSONResponse:
        data = await request.body()
        state.posts += 1
        ok = verify(
            secret,
            data,
            request.headers.get(TIMESTAMP_HEADER, ""),
            request.headers.get(SIGNATURE_HEADER, ""),
        )
        if not ok:
            state.forged += 1
            return JSONResponse({"error": "bad signature"}, 401)
        if state.status >= 300:
            return JSONResponse({"error": "down"}, state.status)
        seen = {e["id"] for e in state.events}
        for event in json.loads(data)["events"]:
            if event["id"] in seen:
                state.duplicates += 1
            else:
                state.events.append(event)
        return JSONResponse({})

    app = Starlette(routes=[Route("/hooks", hooks, methods=["POST"])])
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await wait_until_async(lambda: server.started, 10, message="receiver started")
        yield state
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()
