"""One batch POSTed until the receiver takes it: signed, retried with capped, jittered backoff."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import httpx

from realtime import metrics
from realtime.webhooks.events import WebhookEvent, body, signed_headers

log = logging.getLogger("realtime.webhooks")

BACKOFF_BASE = 0.2  # seconds before the first retry
BACKOFF_CAP = 10.0  # the longest wait between two attempts
# A 4xx other than these says the receiver will never take the batch: it is dropped (counted
# in ``rejected``) instead of blocking every later event.
RETRIED_4XX = frozenset({408, 409, 425, 429})


def backoff(attempt: int, cap: float = BACKOFF_CAP) -> float:
    """Exponential, capped, with jitter (half to all of it), so instances that failed together
    do not retry together."""
    ceiling: float = min(cap, BACKOFF_BASE * 2.0 ** min(attempt, 30))
    return random.uniform(ceiling / 2, ceiling)


class Poster:
    """Counters for the metrics endpoint: ``delivered`` and ``rejected`` count events,
    ``failures`` failed attempts (each one retried)."""

    def __init__(self, url: str, secret: str, timeout: float, backoff_cap: float = BACKOFF_CAP):
        self._url = url
        self._secret = secret
        self._cap = backoff_cap
        # The receiver is the app's own backend, called directly: proxy variables are not read.
        self._client = httpx.AsyncClient(timeout=timeout, trust_env=False)
        # Only scheme and host in logs: a URL may carry credentials or a token in its path.
        parts = urlsplit(url)
        self._where = f"{parts.scheme}://{parts.hostname}" + (
            f":{parts.port}" if parts.port else ""
        )
        self.delivered = 0
        self.rejected = 0
        self.failures = 0

    async def post(
        self,
        events: list[WebhookEvent],
        before_attempt: Callable[[], Awaitable[None]] | None = None,
    ) -> bool:
        """True once a 2xx came; False when the receiver refused the batch for good. Retries
        any other outcome until it succeeds or the caller is cancelled."""
        data = body(events)
        attempt = 0
        while True:
            if before_attempt is not None:
                await before_attempt()
            try:
                # Signed at each attempt: the timestamp stays fresh for the receiver's check.
                headers = signed_headers(self._secret, data)
                response = await self._client.post(self._url, content=data, headers=headers)
                status: int | None = response.status_code
                why = f"answered {status}"
            except httpx.HTTPError as exc:
                status, why = None, f"failed: {type(exc).__name__}"
            if status is not None and 200 <= status < 300:
                self.delivered += len(events)
                metrics.WEBHOOKS_DELIVERED.inc(len(events))
                if attempt:
                    log.info("webhook receiver %s took a batch after %d retries", self._where,
                             attempt)  # fmt: skip
                return True
            if status is not None and 400 <= status < 500 and status not in RETRIED_4XX:
                self.rejected += len(events)
                metrics.WEBHOOKS_REJECTED.inc(len(events))
                log.error("webhook receiver %s refused %d events (%s); dropped", self._where,
                          len(events), why)  # fmt: skip
                return False
            self.failures += 1
            metrics.WEBHOOK_FAILURES.inc()
            delay = backoff(attempt, self._cap)
            # One line per failure would flood the log while a receiver is down: the first
            # ones, then one in ten.
            if attempt < 3 or attempt % 10 == 0:
                log.warning("webhook POST to %s %s; retry %d in %.1fs", self._where, why,
                            attempt + 1, delay)  # fmt: skip
            await asyncio.sleep(delay)
            attempt += 1

    async def close(self) -> None:
        await self._client.aclose()
