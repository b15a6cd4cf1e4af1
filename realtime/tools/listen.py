"""``realtime listen CHANNEL``: a terminal subscriber; every frame the gateway sends is printed
as one JSON line (the token, if any, from ``REALTIME_TOKEN``, sent as a header)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from urllib.parse import quote

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed


async def listen(url: str, channel: str, user: str | None, presence: bool) -> int:
    ws_url = url.replace("http", "ws", 1).rstrip("/") + "/ws"
    if user:
        ws_url += f"?user_id={quote(user)}"
    headers = {}
    token = os.environ.get("REALTIME_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    listen = ["broadcast", "presence"] if presence else ["broadcast"]
    async with connect(ws_url, additional_headers=headers, open_timeout=10) as ws:
        await ws.send(json.dumps({"type": "subscribe", "channel": channel, "listen": listen}))
        try:
            async for frame in ws:
                print(frame if isinstance(frame, str) else frame.decode(), flush=True)
        except ConnectionClosed:
            pass
        close = ws.close_code
        print(f"realtime listen: closed with {close} {ws.close_reason or ''}", file=sys.stderr)
        return 0 if close in (1000, 1001) else 1


def run(url: str, channel: str, user: str | None, presence: bool) -> int:
    try:
        return asyncio.run(listen(url, channel, user, presence))
    except KeyboardInterrupt:
        return 0
    except (OSError, TimeoutError) as exc:
        print(f"realtime listen: {url} did not answer: {type(exc).__name__}", file=sys.stderr)
        return 1
    except Exception as exc:  # a refused upgrade (401, 403, 503) and the like
        print(f"realtime listen: {exc}", file=sys.stderr)
        return 1
