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
ALL = frozenset(ACTIONS)
_RIGHTS: dict[frozenset[str], frozenset[str]] = {ALL: ALL}  # one object per set, shared


# A compiled pattern: the exact name, a prefix (one trailing ``*``), or a regex for anything
# else. Most grants are the first two; they need no regex object per connection.
EXACT, PREFIX, REGEX = 0, 1, 2
Rule = tuple[int, str, "re.Pattern[str] | None", frozenset[str]]


class Grants:
    """Compiled once per token. Answers are remembered (a connection publishes to few
    channels, many times): a repeat costs one dict lookup, not a match per pattern."""

    __slots__ = ("_memo", "_rules")

    def __init__(self, rules: list[Rule]) -> None:
        self._rules = rules
        self._memo: dict[tuple[str, str], bool] | None = None

    def allows(self, action: Action, channel: str) -> bool:
        key = (action, channel)
        memo = self._memo
        if memo is None:
            memo = self._memo = {}
        answer = memo.get(key)
        if answer is None:
            answer = any(action in rule[3] and _matches(rule, channel) for rule in self._rules)
            if len(memo) >= MEMO_SIZE:
                memo.clear()  # bounded: a client cycling through channels gains nothing
            memo[key] = answer
        return answer

    def __len__(self) -> int:
        return len(self._rules)


def _matches(rule: Rule, channel: str) -> bool:
    kind, text, regex, _rights = rule
    if kind == EXACT:
        return channel == text
    if kind == PREFIX:
        return channel.startswith(text)
    assert regex is not None
    return regex.fullmatch(channel) is not None


NONE = Grants([])


def compile_rule(pattern: str, user_id: str, rights: frozenset[str]) -> Rule:
    pieces = re.split(r"(\*|\{sub\})", pattern)
    stars = pieces.count("*")
    # The user id is substituted as text, after the wildcards were found: a "*" in it is
    # no wildcard.
    if stars == 0 or (stars == 1 and pieces[-2:] == ["*", ""]):
        text = "".join(user_id if p == "{sub}" else p for p in pieces if p != "*")
        return (EXACT if stars == 0 else PREFIX, text, None, rights)
    return (REGEX, pattern, compile_pattern(pattern, user_id), rights)


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
    rules: list[Rule] = []
    for pattern, rights in claim.items():
        if not isinstance(rights, list) or not all(isinstance(r, str) for r in rights):
            raise ValueError(f"claim {CLAIM!r}: the rights of {pattern!r} must be a list")
        unknown = set(rights) - {*ACTIONS, "*"}
        if unknown:
            raise ValueError(
                f"claim {CLAIM!r}: unknown right {sorted(unknown)[0]!r} (expected "
                f"{', '.join(ACTIONS)} or *)"
            )
        granted = ALL if "*" in rights else _RIGHTS.setdefault(frozenset(rights), frozenset(rights))
        rules.append(compile_rule(pattern, user_id, granted))
    return Grants(rules)
