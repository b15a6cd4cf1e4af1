"""The consumer's rebuild wait: fast first, jittered, capped low."""

from __future__ import annotations

from realtime_kafka.broker import backoff


def test_fast_first_capped_and_jittered() -> None:
    assert all(0.05 <= backoff(0) <= 0.1 for _ in range(200))
    assert max(backoff(n) for n in range(30) for _ in range(20)) <= 1.0
    assert len({round(backoff(5), 6) for _ in range(50)}) > 10
