"""Keys for the HTTP API (``API_KEYS``): parsing, constant-time lookup, channel patterns.

``API_KEYS=key1,key2:orders.*|news`` holds two keys: ``key1`` may publish anywhere, ``key2``
only to ``orders.<anything>`` and ``news``. Several keys at once let one be rotated out
without downtime. A key is a secret: it is never logged, and its ``repr`` hides it.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from realtime.errors import ConfigError

MIN_KEY_LENGTH = 16
_SEPARATORS = re.compile(r"[,:|\s]")


@dataclass(frozen=True)
class ApiKey:
    secret: str = field(repr=False)
    # Patterns the key may publish to; empty: every channel. ``*`` matches any characters.
    patterns: tuple[str, ...] = ()
    _regex: re.Pattern[str] | None = field(default=None, repr=False, compare=False)

    def allows(self, channel: str) -> bool:
        return self._regex is None or self._regex.fullmatch(channel) is not None


def compile_patterns(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    """One regex matching any of ``patterns`` whole (``*``: any characters); None: no
    patterns. HISTORY_CHANNELS uses the same patterns."""
    if not patterns:
        return None
    return re.compile("|".join(re.escape(p).replace(r"\*", ".*") for p in patterns), re.DOTALL)


def parse_api_keys(name: str, text: str | None) -> tuple[ApiKey, ...]:
    """``key[:pattern|pattern],...`` -> keys; a malformed entry raises ConfigError naming
    ``name`` and the entry's position (never the key itself)."""
    if text is None:
        return ()
    keys = []
    for position, entry in enumerate(text.split(","), 1):
        entry = entry.strip()
        if not entry:
            continue
        secret, sep, pattern_text = entry.partition(":")
        secret = secret.strip()
        if len(secret) < MIN_KEY_LENGTH or _SEPARATORS.search(secret):
            raise ConfigError(
                name,
                f"key #{position} must be at least {MIN_KEY_LENGTH} characters without"
                " spaces, ',', ':' or '|'",
            )
        patterns = tuple(p.strip() for p in pattern_text.split("|") if p.strip())
        if sep and not patterns:
            raise ConfigError(name, f"key #{position} has ':' but no channel pattern after it")
        keys.append(ApiKey(secret, patterns, compile_patterns(patterns)))
    return tuple(keys)


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key a request carries: ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``."""
    scheme, _, credentials = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return headers.get("x-api-key", "").strip() or None


def find_key(keys: tuple[ApiKey, ...], presented: str) -> ApiKey | None:
    """The configured key equal to ``presented``. Every key is compared, in constant time
    each, so the answer's timing says nothing about which key or how much of it matched."""
    given = presented.encode()
    found = None
    for key in keys:
        if hmac.compare_digest(key.secret.encode(), given):
            found = key
    return found
