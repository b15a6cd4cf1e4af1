"""The quota bookkeeping as pure logic, on a fake clock."""

from __future__ import annotations

import pytest

from realtime.errors import FrameError
from realtime.server.limits import ConnectionLimits, Quotas, TokenBucket
from realtime.wire.messages import Broadcast, PresenceJoin, Subscribe


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_spends_its_burst_then_refills_at_the_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(10, 3, clock)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    clock.now += 0.1
    assert bucket.take() and not bucket.take()
    clock.now += 100
    assert sum(bucket.take() for _ in range(10)) == 3  # never more than the burst


def test_a_flood_is_refused_then_marked_abusive_and_a_pause_forgives() -> None:
    clock = Clock()
    limits = ConnectionLimits(Quotas(frames_per_second=10, frame_burst=10), clock)
    for _ in range(10):
        limits.admit_frame()
    refused = 0
    for _ in range(100):  # bounded: abusive long before
        if limits.abusive:
            break
        with pytest.raises(FrameError) as exc:
            limits.admit_frame()
        assert exc.value.code == "rate_limited"
        refused += 1
    assert (
        limits.abusive and refused == 11
    )  # one second's worth of refusals (plus the one that tips it)
    calm = ConnectionLimits(Quotas(frames_per_second=10, frame_burst=10), clock)
    for _ in range(20):
        for _ in range(10):
            calm.admit_frame()
        clock.now += 1.0  # within the rate: never refused, never abusive
    assert not calm.abusive


def test_no_rate_means_no_limit() -> None:
    limits = ConnectionLimits(Quotas())
    for _ in range(10_000):
        limits.admit_frame()


def test_caps_count_only_new_channels() -> None:
    limits = ConnectionLimits(Quotas(max_subscriptions=1, max_presence_joins=1))
    have = {"a": {"broadcast"}}
    limits.admit(Subscribe(channel="a", listen=["broadcast"]), have, {})
    with pytest.raises(FrameError, match="1 channels"):
        limits.admit(Subscribe(channel="b", listen=["broadcast"]), have, {})
    limits.admit(PresenceJoin(channel="a"), {}, {"a": 1})
    with pytest.raises(FrameError) as exc:
        limits.admit(PresenceJoin(channel="b"), {}, {"a": 1})
    assert exc.value.code == "too_many_presence_joins"


def test_event_name_length() -> None:
    limits = ConnectionLimits(Quotas(max_event_name=5))
    limits.admit(Broadcast(channel="c", event="12345"), {}, {})
    with pytest.raises(FrameError) as exc:
        limits.admit(Broadcast(channel="c", event="123456"), {}, {})
    assert exc.value.code == "invalid_message"


def test_resync_once_per_interval_per_channel_with_bounded_memory() -> None:
    clock = Clock()
    limits = ConnectionLimits(Quotas(resync_interval=1.0), clock)

    def subscribe(message: Subscribe) -> None:
        limits.admit(message, {}, {})
        limits.acted(message)  # carried out: its sync was sent

    subscribe(Subscribe(channel="a"))
    with pytest.raises(FrameError):
        limits.admit(Subscribe(channel="a"), {}, {})
    subscribe(Subscribe(channel="a", listen=["broadcast"]))
    clock.now += 1.0
    subscribe(Subscribe(channel="a"))
    for n in range(200):
        subscribe(Subscribe(channel=f"c{n}"))
        clock.now += 1.0
    assert len(limits._synced or {}) <= 66


def test_a_refused_subscribe_costs_no_resync_budget() -> None:
    # Admitted but then refused (forbidden, a broker error): no sync went out, so the next
    # subscribe of the channel must not be rate limited.
    limits = ConnectionLimits(Quotas(resync_interval=1.0), Clock())
    limits.admit(Subscribe(channel="a"), {}, {})
    limits.admit(Subscribe(channel="a"), {}, {})
