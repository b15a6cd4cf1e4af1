"""How long to wait before each reconnect: exponential, capped, with jitter so that clients
cut off together (a gateway restart) do not all come back in the same instant."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Backoff:
    """Attempt ``n`` (0 first) waits a random time between half and all of
    ``min(cap, base * factor**n)`` seconds ("equal jitter": never zero, so a gateway that
    refuses at once is not hammered, and spread so reconnects do not come in one wave).

    >>> Backoff(base=0.5, cap=20).delay(3, random.Random(1)) <= 4.0
    True
    """

    base: float = 0.5
    cap: float = 20.0
    factor: float = 2.0
    _rng: random.Random = field(default_factory=random.Random, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 0 < self.base <= self.cap or self.factor < 1:
            raise ValueError("Backoff needs 0 < base <= cap and factor >= 1")

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        ceiling = min(self.cap, self.base * self.factor ** min(attempt, 64))
        return ceiling / 2 + (rng or self._rng).uniform(0, ceiling / 2)
