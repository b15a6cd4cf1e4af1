"""``realtime publish CHANNEL JSON``: one broadcast through the HTTP API, as a backend sends it
(``POST /api/event`` with :class:`realtime.client.Publisher`, the API key from
``REALTIME_API_KEY``); the answer's body is printed as it came."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

import httpx

from realtime.client import Publisher, PublishError


async def publish(url: str, channel: str, data: Any, event: str) -> str:
    async with Publisher(url, api_key=os.environ.get("REALTIME_API_KEY") or None) as publisher:
        return (await publisher.publish(channel, event, data)).body


def run(url: str, channel: str, payload: str, event: str) -> int:
    try:
        data = json.loads(payload)
    except ValueError:
        print("realtime publish: the payload is not valid JSON", file=sys.stderr)
        return 2
    try:
        body = asyncio.run(publish(url, channel, data, event))
    except PublishError as exc:
        print(exc.body)
        return 1
    except httpx.HTTPError as exc:
        print(f"realtime publish: {url} did not answer: {type(exc).__name__}", file=sys.stderr)
        return 1
    print(body)
    return 0
