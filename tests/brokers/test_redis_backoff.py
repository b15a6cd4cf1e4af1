"""The Redis subscribers' reconnect wait: fast first, jittered, capped low."""

from __future__ import annotations

from realtime.brokers.redis.common import backoff


def test_first_retries_come_well_under_a_second() -> None:
    firsts = [backoff(0) for _ in range(200)]
    assert all(0.05 <= wait <= 0.1 for wait in firsts)
    assert max(backoff(1) for _ in range(200)) <= 0.2


def test_waits_are_capped_at_one_second() -> None:
    waits = [backoff(n) for n in range(30) for _ in range(20)]
    assert max(waits) <= 1.0
    assert min(backoff(30) for _ in range(200)) >= 0.5


def test_waits_are_jittered() -> None:
    # Instances that lost Redis together must not all reconnect in the same instant.
    assert len({round(backoff(5), 6) for _ in range(50)}) > 10
