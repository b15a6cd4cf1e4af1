"""``realtime publish CHANNEL JSON``: one broadcast through the HTTP API, as a backend sends it
(``POST /api/event``, the API key from ``REALTIME_API_KEY``)."""

from __future__ import annotations

import json
import os
import sys

import httpx


def run(url: str, channel: str, payload: str, event: str) -> int:
    try:
        data = json.loads(payload)
    except ValueError:
        print("realtime publish: the payload is not valid JSON", file=sys.stderr)
        return 2
    headers = {}
    key = os.environ.get("REALTIME_API_KEY")
    if key:
        headers["Authorization"] = f"Bearer {key}"
    body = {"channel": channel, "event": event, "payload": data}
    try:
        answer = httpx.post(url.rstrip("/") + "/api/event", json=body, headers=headers, timeout=10)
    except httpx.HTTPError as exc:
        print(f"realtime publish: {url} did not answer: {type(exc).__name__}", file=sys.stderr)
        return 1
    print(answer.text)
    return 0 if answer.status_code == 200 else 1
