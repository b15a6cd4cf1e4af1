"""``HISTORY_CHANNELS``: which channels keep history, as API key channel patterns are written
(``orders.*|news``, ``*`` matching any characters; ``,`` separates patterns too)."""

from __future__ import annotations

import re

from realtime.apikeys import compile_patterns
from realtime.errors import ConfigError

_SPLIT = re.compile(r"[,|]")


def parse_history_channels(name: str, text: str | None) -> tuple[str, ...]:
    """The patterns in ``text``; unset or empty: none (no channel keeps history)."""
    if text is None:
        return ()
    patterns = tuple(p.strip() for p in _SPLIT.split(text) if p.strip())
    for pattern in patterns:
        if any(c.isspace() for c in pattern):
            raise ConfigError(name, f"pattern {pattern!r} contains white space")
    return patterns


class HistoryChannels:
    """Does a channel keep history? One compiled regex, and a cache of the answers for the
    channels seen (bounded: cleared when it grows past ``CACHE``)."""

    CACHE = 10_000

    def __init__(self, patterns: tuple[str, ...]) -> None:
        self.patterns = patterns
        self._regex = compile_patterns(patterns)
        self._known: dict[str, bool] = {}

    def __bool__(self) -> bool:
        return self._regex is not None

    def __contains__(self, channel: object) -> bool:
        if self._regex is None or not isinstance(channel, str):
            return False
        known = self._known.get(channel)
        if known is None:
            if len(self._known) >= self.CACHE:
                self._known.clear()
            known = self._known[channel] = self._regex.fullmatch(channel) is not None
        return known
