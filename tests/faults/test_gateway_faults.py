"""A gateway of two dies (SIGKILL) or is stopped (SIGTERM) while a backend publishes: the
other keeps delivering, presence forgets the departed members within the documented bound."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults import bounds
from tests.faults.scenarios import gateway_kill, gateway_sigterm

pytestmark = pytest.mark.integration


async def test_gateway_killed(tmp_path: Path) -> None:
    ttl = 3
    figures = await gateway_kill(tmp_path, ttl=ttl)
    # The surviving instance never noticed, for its own traffic.
    assert figures.failed == 0, figures
    assert figures.duplicates == 0, figures
    assert figures.time_to_red is None, figures
    assert figures.refused_503 == 0, figures
    assert figures.lost == 0, figures
    assert figures.presence_after is not None, figures
    assert figures.presence_after <= ttl + bounds.PRESENCE_AFTER_GATEWAY_KILL_OVER_TTL, figures


async def test_gateway_stopped(tmp_path: Path) -> None:
    figures = await gateway_sigterm(tmp_path)
    # The balancer saw /readyz red before the port closed: no post went unanswered.
    assert figures.time_to_red is not None, figures
    assert figures.failed == 0, figures
    assert figures.duplicates == 0, figures
    assert figures.lost == 0, figures
    # The member on the stopped instance left at once (TTL is 60 s here).
    assert figures.presence_after is not None, figures
    assert figures.presence_after <= bounds.PRESENCE_AFTER_SIGTERM_EXIT, figures
    assert figures.exit_after is not None, figures
    assert figures.exit_after <= bounds.EXIT_AFTER_SIGTERM, figures
