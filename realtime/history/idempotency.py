"""``POST /api/event``'s ``Idempotency-Key``: a request retried within the window is stored and
delivered once, and answered with the first answer (same ``message_id``, ``offset``, ``epoch``).

A key lives where history and presence live: on the presence Redis (every instance sees it, so
a retry that a load balancer sends to another instance is caught too), in this process in
embedded mode. Its entry is first a claim (the request's fingerprint only) held for
``CLAIM_SECONDS`` while the publish runs, then the answer kept for the window:

- no entry: the request claims the key, publishes, and the answer replaces the claim;
- a claim: the first request is still running: 409, retry later;
- an answer: the same answer again, nothing published;
- either, with another body: 422 (the key names one request).

What it does not cover: a gateway that dies between publishing and storing the answer leaves a
claim that ends after ``CLAIM_SECONDS``, and a retry after that publishes again.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from realtime.errors import HistoryError

# How long a claim holds the key while its request publishes: far above a publish's time (the
# brokers' own timeouts are a few seconds), short enough that a gateway killed mid-request
# does not block the key for the whole window.
CLAIM_SECONDS = 30
# Most keys held in embedded mode; the oldest go first (they are the nearest their end).
MEMORY_MAX_KEYS = 100_000
MAX_KEY_LENGTH = 255
# An entry's value: "c:<fingerprint>" (claimed) or "a:<fingerprint>:<answer JSON>" (answered).
CLAIMED, ANSWERED = "c", "a"


class BadKey(ValueError):
    """The header's value is not a key we take."""


def check_key(value: str) -> str:
    """The header's value when it is 1 to 255 visible ASCII characters; else BadKey."""
    if not 0 < len(value) <= MAX_KEY_LENGTH or not all("!" <= c <= "~" for c in value):
        raise BadKey(f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} visible ASCII characters")
    return value


def entry_name(scope: str, key: str) -> str:
    """The store's name for ``key`` sent with API key ``scope`` ("" without API keys): hashed,
    so the secret never sits in a key name and two API keys' clients never share a key."""
    digest = hashlib.sha256(f"{scope}\0{key}".encode()).hexdigest()[:32]
    return f"idempotency:{digest}"


def fingerprint(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()[:32]


@dataclass(frozen=True)
class Seen:
    """What the store held for a key: a claim (``answer`` None) or an answer."""

    fingerprint: str
    answer: bytes | None


def _parse(value: bytes | str) -> Seen:
    text = value.decode() if isinstance(value, bytes) else value
    state, _, rest = text.partition(":")
    if state == ANSWERED:
        mark, _, answer = rest.partition(":")
        return Seen(mark, answer.encode())
    return Seen(rest, None)


class IdempotencyStore(Protocol):
    window: int

    async def claim(self, name: str, mark: str) -> Seen | None:
        """Claim ``name`` for a request with fingerprint ``mark``: None when claimed now,
        else what was there. Raises HistoryError when the store cannot answer."""
        ...

    async def answer(self, name: str, mark: str, answer: bytes) -> None:
        """Keep ``answer`` for the window in place of the claim."""
        ...

    async def release(self, name: str) -> None:
        """Drop a claim whose request failed, so a retry can publish."""
        ...

    async def close(self) -> None: ...


# KEYS[1]: the entry. ARGV: the claim's value, its seconds. Returns the value held, or nil.
_CLAIM = """
local held = redis.call('GET', KEYS[1])
if held then return held end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return false
"""


class RedisIdempotency:
    def __init__(self, client: aioredis.Redis, window: int) -> None:
        self._client = client
        self.window = window
        self._claim = client.register_script(_CLAIM)

    async def _call(self, what: str, call: Callable[[], Any]) -> Any:
        try:
            return await call()
        except RedisError as exc:
            raise HistoryError(f"idempotency {what} failed: {type(exc).__name__}: {exc}") from exc

    async def claim(self, name: str, mark: str) -> Seen | None:
        held = await self._call(
            "claim",
            lambda: self._claim(keys=[name], args=[f"{CLAIMED}:{mark}", CLAIM_SECONDS]),
        )
        return None if held is None else _parse(held)

    async def answer(self, name: str, mark: str, answer: bytes) -> None:
        value = b"%s:%s:%s" % (ANSWERED.encode(), mark.encode(), answer)
        await self._call("answer", lambda: self._client.set(name, value, ex=self.window))

    async def release(self, name: str) -> None:
        await self._call("release", lambda: self._client.delete(name))

    async def close(self) -> None:
        await self._client.aclose()


class MemoryIdempotency:
    """Embedded mode: entries in insertion order, so the first ones end first."""

    def __init__(
        self,
        window: int,
        max_keys: int = MEMORY_MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.window = window
        self._max = max_keys
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, Seen]] = OrderedDict()

    def _sweep(self, now: float) -> None:
        while self._entries:
            name, (until, _) = next(iter(self._entries.items()))
            if until > now and len(self._entries) <= self._max:
                return
            del self._entries[name]

    def _put(self, name: str, until: float, seen: Seen) -> None:
        self._entries.pop(name, None)
        self._entries[name] = (until, seen)

    async def claim(self, name: str, mark: str) -> Seen | None:
        now = self._clock()
        self._sweep(now)
        held = self._entries.get(name)
        if held is not None and held[0] > now:
            return held[1]
        self._put(name, now + CLAIM_SECONDS, Seen(mark, None))
        self._sweep(now)
        return None

    async def answer(self, name: str, mark: str, answer: bytes) -> None:
        self._put(name, self._clock() + self.window, Seen(mark, answer))
        self._sweep(self._clock())

    async def release(self, name: str) -> None:
        self._entries.pop(name, None)

    async def close(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
