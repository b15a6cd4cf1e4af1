"""The soak's accounting: which publish each subscriber session was owed, and what it got.

A *publish* is owed to a *session* (one WebSocket connection's subscription to one channel)
when the session was subscribed for the whole time of the publish:

- the session's subscribe was acknowledged (``ack`` received: the subscription is live on
  every instance) before the publish request was sent, and
- the session was still open and reading ``grace`` seconds after the publish was answered
  (HTTP 200 or ``ack``): a session that closes right after a publish was answered may
  legitimately lose a message still on its way, so it is owed only what was answered at
  least ``grace`` seconds before it started to close. A session open at the end is owed
  every publish that was answered.

Every time is the driver's own ``time.monotonic()``, taken where it errs on the safe side:
``sent`` before the request is written, ``acked`` and ``subscribed`` when the answer has been
read (later than the gateway acted), ``left`` before the close starts. So a slow driver can
only make fewer publishes owed, never report a loss that did not happen; a loss reported is
a publish answered 200 that a session, subscribed before it and open ``grace`` seconds after
it, never received.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field


@dataclass
class Publish:
    id: int
    channel: str
    sent: float
    acked: float | None = None  # None: not answered with success (not owed to anyone)


@dataclass
class Session:
    id: int
    channel: str
    subscribed: float
    left: float | None = None  # None: still open
    received: set[int] = field(default_factory=set)
    duplicates: int = 0
    foreign: int = 0  # broadcasts of another channel

    def receive(self, publish_id: int, channel: str) -> None:
        if channel != self.channel:
            self.foreign += 1
        elif publish_id in self.received:
            self.duplicates += 1
        else:
            self.received.add(publish_id)


@dataclass
class Ledger:
    grace: float
    publishes: dict[int, Publish] = field(default_factory=dict)
    sessions: list[Session] = field(default_factory=list)

    def audit(self) -> tuple[int, list[tuple[int, int]]]:
        """(how many deliveries were owed, (publish id, session id) of each one missing)."""
        grouped: dict[str, list[Publish]] = defaultdict(list)
        for p in self.publishes.values():
            if p.acked is not None:
                grouped[p.channel].append(p)
        owed = 0
        lost = []
        for s in self.sessions:
            for p in grouped.get(s.channel, ()):
                assert p.acked is not None
                if s.subscribed <= p.sent and (s.left is None or p.acked + self.grace <= s.left):
                    owed += 1
                    if p.id not in s.received:
                        lost.append((p.id, s.id))
        return owed, lost
