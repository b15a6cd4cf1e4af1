"""What may soon become deliveries, for the write path's flusher
(``realtime.server.direct.Flusher``), which holds a pending pass while it moves so that
publishes arriving meanwhile go out in that pass:

- ``count``: input that arrived (frames read from WebSocket clients, HTTP requests, publishes
  queued in the embedded broker), a number that only grows;
- ``publishing``: publishes on their way to the broker (``Node.publish`` between its call and
  the broker's answer), whose broadcasts come back through it: an HTTP request waits for that
  answer before its connection's next pipelined request is read.

Process-wide: a count from another event loop (tests run several) costs at most a bounded
wait of one pass.
"""

from __future__ import annotations


class Arrivals:
    __slots__ = ("count", "publishing")

    def __init__(self) -> None:
        self.count = 0
        self.publishing = 0


ARRIVALS = Arrivals()


def arrived() -> None:
    """Input came in that may publish: a pending pass may wait for it."""
    ARRIVALS.count += 1
