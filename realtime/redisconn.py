"""How the gateway opens a Redis client: one place, shared by the redis broker and presence."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis


def connect(url: str, **options: Any) -> aioredis.Redis:
    """A client for ``url`` with the gateway's defaults (keepalive, bounded connect time)."""
    return aioredis.Redis.from_url(url, socket_keepalive=True, socket_connect_timeout=5, **options)
