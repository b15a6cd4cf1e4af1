"""Redis faults against a real gateway process on a real Redis, with a backend publishing
every 50 ms: each test asserts the bound docs/reliability.md promises for its fault."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults import bounds
from tests.faults.harness import Figures
from tests.faults.scenarios import (
    redis_client_kill,
    redis_debug_sleep,
    redis_flushall,
    redis_freeze,
    redis_restart,
    sentinel_failover,
)

pytestmark = pytest.mark.integration


def answered_clearly(figures: Figures) -> None:
    """Every publish got 200 or 503 (never a timeout, a reset or a 500), none delivered twice."""
    assert figures.failed == 0, figures
    assert figures.duplicates == 0, figures


def within(value: float | None, bound: float, figures: Figures) -> None:
    assert value is not None, figures
    assert value <= bound, figures


async def test_redis_restart(tmp_path: Path) -> None:
    # The outage: 7 s, long enough for an exponential backoff to grow past 5 s.
    figures = await redis_restart(tmp_path, down=7.0)
    answered_clearly(figures)
    within(figures.time_to_red, bounds.RED_WHEN_BROKER_DOWN, figures)
    assert figures.refused_503 > 0, figures  # publishes while Redis was away said so
    within(figures.time_to_green, bounds.GREEN_AFTER_REDIS_BACK, figures)
    within(figures.first_delivery, bounds.GREEN_AFTER_REDIS_BACK, figures)
    # Without history (#11) a publish answered 200 after Redis came back but before the
    # subscriber re-subscribed is lost: the loss is bounded by that window, not zero.
    assert figures.loss_window <= bounds.LOSS_WINDOW_AFTER_RESTART, figures
    within(figures.presence_after, bounds.PRESENCE_AFTER_DATA_LOSS, figures)


async def test_redis_frozen(tmp_path: Path) -> None:
    figures = await redis_freeze(tmp_path, frozen=6.0)
    answered_clearly(figures)
    within(figures.time_to_red, bounds.RED_WHEN_UNANSWERED, figures)
    within(figures.time_to_green, bounds.GREEN_AFTER_REDIS_BACK, figures)
    # Redis kept its connections and the messages it accepted: every 200 arrives.
    assert figures.lost == 0, figures
    # What was published after the resume arrives at once, not behind a slow backlog.
    within(figures.first_delivery, bounds.FIRST_DELIVERY_AFTER_RESUME, figures)
    # No publish waited past the publisher's deadline, however many queued meanwhile.
    assert figures.slowest_answer <= bounds.ANSWER_WHEN_UNANSWERED, figures
    assert figures.presence_after is not None, figures


async def test_redis_busy(tmp_path: Path) -> None:
    figures = await redis_debug_sleep(tmp_path, asleep=4.0)
    answered_clearly(figures)
    within(figures.time_to_red, bounds.RED_WHEN_UNANSWERED, figures)
    within(figures.time_to_green, bounds.GREEN_AFTER_REDIS_BACK, figures)
    assert figures.lost == 0, figures
    # What was published after the resume arrives at once, not behind a slow backlog.
    within(figures.first_delivery, bounds.FIRST_DELIVERY_AFTER_RESUME, figures)
    # No publish waited past the publisher's deadline, however many queued meanwhile.
    assert figures.slowest_answer <= bounds.ANSWER_WHEN_UNANSWERED, figures
    assert figures.presence_after is not None, figures


async def test_pubsub_connections_killed(tmp_path: Path) -> None:
    figures = await redis_client_kill(tmp_path)
    answered_clearly(figures)
    within(figures.time_to_green, bounds.GREEN_AFTER_SUBSCRIBER_CUT, figures)
    within(figures.first_delivery, bounds.GREEN_AFTER_SUBSCRIBER_CUT, figures)
    # Publishes while the subscriber reconnects are lost (Pub/Sub keeps nothing): a short window.
    assert figures.loss_window <= bounds.GREEN_AFTER_SUBSCRIBER_CUT, figures
    assert figures.presence_after is not None, figures


async def test_redis_flushall(tmp_path: Path) -> None:
    figures = await redis_flushall(tmp_path)
    answered_clearly(figures)
    assert figures.time_to_red is None, figures  # nothing to be red about: Redis is up
    assert figures.lost == 0, figures
    within(figures.presence_after, bounds.PRESENCE_AFTER_DATA_LOSS, figures)


async def test_sentinel_failover(tmp_path: Path) -> None:
    figures = await sentinel_failover(tmp_path)
    answered_clearly(figures)
    assert figures.time_to_red is not None, figures  # the master's death was noticed
    # From the promotion (the mark "healed"), as centrifugo #1189's subscriber never did.
    within(figures.time_to_green, bounds.GREEN_AFTER_FAILOVER, figures)
    within(figures.first_delivery, bounds.GREEN_AFTER_FAILOVER, figures)
    assert figures.loss_window <= bounds.GREEN_AFTER_FAILOVER, figures
    within(figures.presence_after, bounds.PRESENCE_AFTER_DATA_LOSS, figures)
