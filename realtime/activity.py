"""A count of input that may become deliveries: frames read from WebSocket clients, HTTP
requests, publishes queued in the embedded broker. The write path's flusher
(``realtime.server.direct.Flusher``) holds a pass while it moves, so publishes that arrive
while a pass is pending go out in it. One process-wide count: a count from another event loop
(tests run several) costs at most one more loop iteration of waiting.
"""

from __future__ import annotations


class Arrivals:
    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0


ARRIVALS = Arrivals()


def arrived() -> None:
    """Input came in that may publish: a pending pass may wait for it."""
    ARRIVALS.count += 1
