"""The lifespan's garbage-collector settings for a serving process (``realtime serve``)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from typing import Any

import pytest

from realtime.server.app import create_app
from realtime.server.lifespan import YOUNG_GC_THRESHOLD
from realtime.testing.gateway import make_settings


@pytest.fixture
def gc_state() -> Iterator[None]:
    threshold = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


async def started_then_stopped(freeze_gc: bool) -> tuple[tuple[int, int, int], int]:
    """Runs the app's lifespan: the collector's threshold and freeze count once started."""
    app = create_app(make_settings(), freeze_gc=freeze_gc)
    incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    sent: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await incoming.put({"type": "lifespan.startup"})
    task = asyncio.create_task(app({"type": "lifespan"}, incoming.get, sent.put))
    message = await asyncio.wait_for(sent.get(), 10)
    assert message["type"] == "lifespan.startup.complete"
    seen = gc.get_threshold(), gc.get_freeze_count()
    await incoming.put({"type": "lifespan.shutdown"})
    assert (await asyncio.wait_for(sent.get(), 10))["type"] == "lifespan.shutdown.complete"
    await task
    return seen


async def test_a_serving_gateway_freezes_start_up_and_collects_young_objects_less_often(
    gc_state: None,
) -> None:
    gc.set_threshold(700, 10, 10)
    threshold, frozen = await started_then_stopped(freeze_gc=True)
    assert threshold[0] == YOUNG_GC_THRESHOLD
    assert frozen > 0


async def test_an_embedded_app_leaves_the_collector_alone(gc_state: None) -> None:
    gc.set_threshold(700, 10, 10)
    threshold, _ = await started_then_stopped(freeze_gc=False)
    assert threshold == (700, 10, 10)
