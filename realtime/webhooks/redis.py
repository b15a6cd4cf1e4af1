"""Webhooks on Redis: every instance reads one stream through one consumer group.

The presence scripts write each event into ``realtime:webhooks`` in the same atomic step as the
change that causes it (``realtime/presence/redis.py``), so an event is in the stream once,
whichever instance joined, left or reaped. Every instance reads it with ``XREADGROUP`` in group
``realtime-webhooks``: Redis gives each entry to one consumer. An instance POSTs its batch until
the receiver takes it, then ``XACK``s and ``XDEL``s it; before each attempt it renews its claim
(``XCLAIM ... JUSTID``) so nobody takes a batch still being tried. A batch whose instance died
is idle for ``WEBHOOK_CLAIM_SECONDS`` and taken over by the next instance's ``XAUTOCLAIM``.

Once per event in the stream; delivered at least once: an instance that died after the
receiver's 2xx and before its ``XACK`` leaves the batch to be sent again (same ids).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Collection
from typing import Any

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from realtime import metrics
from realtime.presence.redis import WEBHOOK_DROPPED, WEBHOOK_GROUP, WEBHOOK_STREAM
from realtime.webhooks.events import WebhookEvent
from realtime.webhooks.memory import BATCH
from realtime.webhooks.poster import Poster, backoff

log = logging.getLogger("realtime.webhooks")

GROUP = WEBHOOK_GROUP
BLOCK_MS = 1000  # below the client's command timeout (3 s)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def decode_entry(entry_id: Any, fields: dict[Any, Any]) -> WebhookEvent:
    f = {_text(k): _text(v) for k, v in fields.items()}
    return WebhookEvent(
        name=f["name"],
        # The script stores the channel as the JSON string it already had.
        channel=msgspec.json.decode(f["channel"], type=str),
        time_ms=int(f["time_ms"]),
        id=_text(entry_id),
        user_id=f.get("user_id"),
    )


class RedisWebhooks:
    def __init__(
        self,
        client: aioredis.Redis,
        poster: Poster,
        events: Collection[str],
        claim_seconds: float,
    ) -> None:
        self._client = client
        self.poster = poster
        self._events = frozenset(events)
        self._claim_ms = int(claim_seconds * 1000)
        self._consumer = uuid.uuid4().hex[:12]
        self._task: asyncio.Task[None] | None = None
        self._next_claim = 0.0
        self._cursor = "0-0"
        # Cluster-wide: events a full stream pushed out (read from Redis at each loop turn).
        self.dropped = 0

    async def start(self) -> None:
        await self._ensure_group()
        self._task = asyncio.create_task(self._run(), name="realtime-webhooks")

    async def _ensure_group(self) -> None:
        try:
            # From the stream's start: events written before any instance made the group count.
            await self._client.xgroup_create(WEBHOOK_STREAM, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                await self._turn()
                failures = 0
            except asyncio.CancelledError:
                raise
            except ResponseError as exc:
                if "NOGROUP" in str(exc):  # Redis lost the stream (a restart): make it again
                    with contextlib.suppress(RedisError):
                        await self._ensure_group()
                    continue
                failures += 1
                log.warning("webhook stream read failed: %s", exc)
                await asyncio.sleep(backoff(failures))
            except Exception as exc:
                failures += 1
                if isinstance(exc, RedisError):
                    log.warning("webhook stream read failed: %s", exc)
                else:
                    log.exception("webhook delivery loop")
                await asyncio.sleep(backoff(failures))

    async def _read_dropped(self) -> None:
        self.dropped = int(await self._client.get(WEBHOOK_DROPPED) or 0)
        metrics.WEBHOOK_STREAM_DROPPED.set(self.dropped)

    async def _turn(self) -> None:
        await self._read_dropped()
        entries: list[Any] = []
        now = time.monotonic()
        if now >= self._next_claim:
            # Batches of instances gone for longer than the claim time.
            self._cursor, entries = await self._autoclaim()
            if self._cursor == "0-0":
                self._next_claim = now + self._claim_ms / 4000
        if not entries:
            reply: Any = await self._client.xreadgroup(
                GROUP, self._consumer, {WEBHOOK_STREAM: ">"}, count=BATCH, block=BLOCK_MS
            )
            entries = reply[0][1] if reply else []
        if entries:
            await self._deliver(entries)

    async def _autoclaim(self) -> tuple[str, list[Any]]:
        reply = await self._client.xautoclaim(
            WEBHOOK_STREAM, GROUP, self._consumer, self._claim_ms, self._cursor, count=BATCH
        )
        # Redis 7 adds the ids of entries trimmed meanwhile (dropped and counted already).
        cursor, entries = reply[0], reply[1]
        return _text(cursor), [(i, f) for i, f in entries if f]

    async def _deliver(self, entries: list[Any]) -> None:
        ids = [entry_id for entry_id, _ in entries]
        events = []
        for entry_id, fields in entries:
            try:
                event = decode_entry(entry_id, fields)
            except (KeyError, ValueError, msgspec.MsgspecError):
                log.error("webhook stream entry %s does not decode; dropped", _text(entry_id))
                continue
            if event.name in self._events:
                events.append(event)

        async def renew() -> None:
            # Keeps the batch ours while the receiver is down (resets its idle time).
            await self._client.xclaim(WEBHOOK_STREAM, GROUP, self._consumer, 0, ids, justid=True)
            await self._read_dropped()  # the stream fills up while a receiver is down

        if events:
            await self.poster.post(events, before_attempt=renew)
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.xack(WEBHOOK_STREAM, GROUP, *ids)
            pipe.xdel(WEBHOOK_STREAM, *ids)
            await pipe.execute()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.poster.close()
        await self._client.aclose()
