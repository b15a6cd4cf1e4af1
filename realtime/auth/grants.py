"""What a token grants: the ``channels`` claim, channel pattern -> rights.

``{"channels": {"room:*": ["subscribe", "publish"], "user:{sub}": ["*"]}}``

- rights: ``subscribe`` (receive broadcasts and presence), ``publish`` (send broadcasts),
  ``presence`` (join and update presence); ``*`` is all three;
- a pattern matches a whole channel name; ``*`` in it matches any run of characters (none
  included); ``{sub}`` stands for the connection's own user id, matched literally (a user id
  holding ``*`` is no wildcard).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Literal

Action = Literal["subscribe", "publish", "presence"]
ACTIONS: tuple[Action, ...] = ("subscribe", "publish", "presence")
CLAIM = "channels"
MAX_PATTERNS = 100
MEMO_SIZE = 64


class Grants:
    """Compiled once per token. Answers are remembered (a connection publishes to few
    channels, many times): a repeat costs one dict lookup, not a regex per pattern."""

    __slots__ = ("_memo", "_rules")

    def __init__(self, rules: list[tuple[re.Pattern[str], frozenset[str]]]) -> None:
        self._rules = rules
        self._memo: dict[tuple[str, str], bool] = {}

    def allows(self, action: Action, channel: str) -> bool:
        key = (action, channel)
        answer = self._memo.get(key)
        if answer is None:
            answer = any(action in rights and p.fullmatch(channel) for p, rights in self._rules)
            if len(self._memo) >= MEMO_SIZE:
                self._memo.clear()  # bounded: a client cycling through channels gains nothing
            self._memo[key] = answer
        return answer

    def __len__(self) -> int:
        return len(self._rules)


NONE = Grants([])


def compile_pattern(pattern: str, user_id: str) -> re.Pattern[str]:
    parts = []
    for piece in re.split(r"(\*|\{sub\})", pattern):
        if piece == "*":
            parts.append(".*")
        elif piece == "{sub}":
            parts.append(re.escape(user_id))
        else:
            parts.append(re.escape(piece))
    return re.compile("".join(parts), re.DOTALL)


def grants_from(claims: Mapping[str, object], user_id: str) -> Grants:
    """The token's grants (none when it has no ``channels`` claim); ValueError when the
    claim is malformed, so a token that meant to grant something is never half-read."""
    claim = claims.get(CLAIM)
    if claim is None:
        return NONE
    if not isinstance(claim, dict):
        raise ValueError(f"claim {CLAIM!r} must be an object of pattern -> list of rights")
    if len(claim) > MAX_PATTERNS:
        raise ValueError(f"claim {CLAIM!r} has more than {MAX_PATTERNS} patterns")
    rules = []
    for pattern, rights in claim.items():
        if not isinstance(rights, list) or not all(isinstance(r, str) for r in rights):
            raise ValueError(f"claim {CLAIM!r}: the rights of {pattern!r} must be a list")
        unknown = set(rights) - {*ACTIONS, "*"}
        if unknown:
            raise ValueError(
                f"claim {CLAIM!r}: unknown right {sorted(unknown)[0]!r} (expected "
                f"{', '.join(ACTIONS)} or *)"
            )
        granted = frozenset(ACTIONS) if "*" in rights else frozenset(rights)
        rules.append((compile_pattern(pattern, user_id), granted))
    return Grants(rules)
