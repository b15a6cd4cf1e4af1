"""The Kafka and RabbitMQ brokers' servers SIGKILLed and started again while a backend
publishes: /readyz red at once, green within the bound once the server is back, no publish
left unanswered. Each starts its own server (a restart is the test), so these are the
suite's slowest: Kafka's JVM starts twice."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults import bounds
from tests.faults.harness import Figures
from tests.faults.scenarios import kafka_restart, rabbitmq_restart

pytestmark = pytest.mark.integration


def check(figures: Figures) -> None:
    assert figures.failed == 0, figures
    assert figures.duplicates == 0, figures
    assert figures.time_to_red is not None, figures
    assert figures.time_to_red <= bounds.RED_WHEN_UNANSWERED, figures
    assert figures.refused_503 > 0, figures
    assert figures.time_to_green is not None, figures
    assert figures.time_to_green <= bounds.GREEN_AFTER_MQ_BACK, figures
    assert figures.first_delivery is not None, figures
    # A publish the broker accepted after the server came back but before the gateway's
    # consumer was attached again may be lost: bounded by that window.
    assert figures.loss_window <= bounds.GREEN_AFTER_MQ_BACK, figures
    assert figures.presence_after is not None, figures  # presence is on Redis: untouched


@pytest.mark.timeout(300)
async def test_rabbitmq_restart(tmp_path: Path) -> None:
    check(await rabbitmq_restart(tmp_path, down=3.0))


@pytest.mark.timeout(300)
async def test_kafka_restart(tmp_path: Path) -> None:
    check(await kafka_restart(tmp_path, down=3.0))
