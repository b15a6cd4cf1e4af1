"""The authorization hook: the app's backend says yes or no to a channel action.

``POST AUTH_HOOK_URL`` with ``{"action", "channel", "user_id"}``; the answer must be
``200 {"allow": true|false}``. Anything else (another status, another body, no answer within
``AUTH_HOOK_TIMEOUT_SECONDS``) is a failure: refused unless ``AUTH_HOOK_FAILURE=open``.
Answers are cached per (user, action, channel) for ``AUTH_HOOK_CACHE_SECONDS``; failures are
not cached; concurrent asks of the same key share one call.
"""

from __future__ import annotations

import asyncio
import logging
import time

import httpx
import msgspec

from realtime.auth.grants import Action

log = logging.getLogger("realtime.auth.hook")
MAX_CACHED = 100_000  # entries; the oldest go first beyond it


class Answer(msgspec.Struct):
    allow: bool


class HookFailed(Exception):
    """The hook gave no usable answer (the message names no host: it may reach a client)."""


_answer = msgspec.json.Decoder(Answer)


class AuthHook:
    def __init__(self, url: str, timeout: float, cache_seconds: float) -> None:
        self._url = url
        self._ttl = cache_seconds
        # Proxy variables are not read: the hook is the app's own backend, called directly.
        self._client = httpx.AsyncClient(timeout=timeout, trust_env=False)
        self._cache: dict[tuple[str, str, str], tuple[bool, float]] = {}
        self._inflight: dict[tuple[str, str, str], asyncio.Future[bool]] = {}
        self.calls = 0

    async def allows(self, action: Action, channel: str, user_id: str) -> bool:
        """The backend's answer; :class:`HookFailed` when there is none."""
        key = (user_id, action, channel)
        cached = self._cache.get(key)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            allowed = await self._ask(action, channel, user_id)
        except BaseException as exc:
            future.set_exception(exc if isinstance(exc, HookFailed) else HookFailed("cancelled"))
            future.exception()  # retrieved: no "never retrieved" warning when nobody waits
            raise
        else:
            future.set_result(allowed)
            self._remember(key, allowed)
            return allowed
        finally:
            del self._inflight[key]

    async def _ask(self, action: Action, channel: str, user_id: str) -> bool:
        self.calls += 1
        body = {"action": action, "channel": channel, "user_id": user_id}
        try:
            response = await self._client.post(self._url, json=body)
        except httpx.TimeoutException:
            log.warning("authorization hook timed out", extra={"channel": channel})
            raise HookFailed("the authorization hook did not answer in time") from None
        except httpx.HTTPError as exc:
            log.warning("authorization hook unreachable: %s", type(exc).__name__)
            raise HookFailed("the authorization hook could not be reached") from None
        if response.status_code != 200:
            log.warning("authorization hook answered %d", response.status_code)
            raise HookFailed(f"the authorization hook answered {response.status_code}")
        try:
            return _answer.decode(response.content).allow
        except msgspec.MsgspecError:
            log.warning('authorization hook answered without a JSON {"allow": bool}')
            raise HookFailed('the authorization hook\'s answer is not {"allow": bool}') from None

    def _remember(self, key: tuple[str, str, str], allowed: bool) -> None:
        if self._ttl <= 0:
            return
        if len(self._cache) >= MAX_CACHED:
            # dicts keep insertion order: drop the oldest entry.
            del self._cache[next(iter(self._cache))]
        self._cache[key] = (allowed, time.monotonic() + self._ttl)

    async def close(self) -> None:
        await self._client.aclose()
