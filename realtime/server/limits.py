"""Per-connection quotas: the bookkeeping the read loop asks before acting on a frame.

Each answer is either "go on" or a :class:`FrameError` the client sees as an ``error`` frame;
only sustained flooding ends a connection (:data:`CLOSE_RATE_LIMITED`). The numbers come from
the settings (``WS_MAX_*``, ``PRESENCE_RESYNC_INTERVAL_MS``); docs/security.md says why each
default is what it is.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from realtime.errors import FrameError
from realtime.wire.messages import (
    PRESENCE,
    AnyClientMessage,
    Broadcast,
    PresenceJoin,
    PresenceUpdate,
    Subscribe,
)

# Documented in docs/protocol.md: a client that kept sending faster than its frame rate after
# being told `rate_limited`.
CLOSE_RATE_LIMITED = 4029


@dataclass(frozen=True)
class Quotas:
    """The limits one connection lives under; 0 means no limit."""

    frames_per_second: float = 0
    frame_burst: int = 0
    max_subscriptions: int = 0
    max_presence_joins: int = 0
    max_event_name: int = 0
    resync_interval: float = 0


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; ``take`` spends one if it can."""

    __slots__ = ("_clock", "_last", "burst", "rate", "tokens")

    def __init__(
        self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self._clock = clock
        self._last = clock()

    def take(self) -> bool:
        now = self._clock()
        self.tokens = min(self.burst, self.tokens + (now - self._last) * self.rate)
        self._last = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class ConnectionLimits:
    """One connection's quotas. ``admit`` is asked before each frame is acted on.

    Refused frames are counted in a second bucket (strikes): a client refused about one
    second's worth of frames within ten seconds keeps flooding after being told, and is closed
    (``abusive`` becomes true) rather than costing an error frame per frame forever.
    """

    __slots__ = ("_clock", "_frames", "_quotas", "_strikes", "_synced", "abusive")

    def __init__(self, quotas: Quotas, clock: Callable[[], float] = time.monotonic) -> None:
        self._quotas = quotas
        self._clock = clock
        rate = quotas.frames_per_second
        self._frames = TokenBucket(rate, quotas.frame_burst or rate, clock) if rate else None
        self._strikes = TokenBucket(rate / 10, rate, clock) if rate else None
        self._synced: dict[str, float] | None = None
        self.abusive = False

    def admit_frame(self) -> None:
        """Spend one frame of the rate; raises ``rate_limited`` when none is left."""
        if self._frames is None or self._frames.take():
            return
        assert self._strikes is not None
        if not self._strikes.take():
            self.abusive = True
        raise FrameError(
            "rate_limited",
            f"more than {self._quotas.frames_per_second:g} frames a second; frame dropped",
        )

    def admit(
        self,
        message: AnyClientMessage,
        subscribed: Mapping[str, object],
        joined: Mapping[str, object],
    ) -> None:
        """Raise the error that refuses ``message``, given what the connection already holds
        (``subscribed`` and ``joined`` are keyed by channel); nothing is changed on refusal."""
        q = self._quotas
        match message:
            case Broadcast(event=event) if q.max_event_name and len(event) > q.max_event_name:
                raise FrameError(
                    "invalid_message",
                    f"event name is {len(event)} characters, more than the {q.max_event_name}"
                    " allowed",
                    message.channel,
                )
            case Subscribe(channel=channel, listen=listen):
                _cap(subscribed, channel, q.max_subscriptions, "too_many_subscriptions",
                     "subscribed to", "unsubscribe from")  # fmt: skip
                if PRESENCE in listen:
                    self._admit_sync(channel)
            case PresenceJoin(channel=channel) | PresenceUpdate(channel=channel):
                _cap(joined, channel, q.max_presence_joins, "too_many_presence_joins",
                     "present in", "leave")  # fmt: skip

    def _admit_sync(self, channel: str) -> None:
        # A subscribe with presence answers with the channel's whole member list: a few bytes
        # in, up to megabytes out. One per channel per interval per connection is plenty for a
        # client that lost track (a gap) and useless for amplification.
        interval = self._quotas.resync_interval
        if not interval:
            return
        last = (self._synced or {}).get(channel)
        if last is not None and self._clock() - last < interval:
            raise FrameError(
                "rate_limited",
                f"presence_sync of this channel was sent less than {interval:g} s ago;"
                " subscribe again later",
                channel,
            )

    def acted(self, message: AnyClientMessage) -> None:
        """``message`` was carried out: a subscribe with presence has now sent a sync. A
        refused one (forbidden, a broker error) sent none and costs no resync budget."""
        interval = self._quotas.resync_interval
        if not interval or not isinstance(message, Subscribe) or PRESENCE not in message.listen:
            return
        now = self._clock()
        synced = self._synced
        if synced is None:
            synced = self._synced = {}
        if len(synced) > 64:
            # Bounded: forget channels whose interval has passed.
            for name, at in list(synced.items()):
                if now - at >= interval:
                    del synced[name]
        synced[message.channel] = now


def _cap(
    held: Mapping[str, object], channel: str, cap: int, code: str, verb: str, undo: str
) -> None:
    """Refuse a new channel once ``held`` has ``cap`` of them (0: no cap); a channel already
    held is never refused, so re-subscribing or updating at the cap still works."""
    if cap and channel not in held and len(held) >= cap:
        raise FrameError(
            code,
            f"this connection is {verb} {cap} channels, the most allowed; {undo} one first",
            channel,
        )
