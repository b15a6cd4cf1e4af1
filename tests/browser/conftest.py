"""Fixtures of the browser tests: a headless system Chromium and numbered screenshots."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser

from realtime.testing.browser import BrowserMissing, Shots, chromium


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    try:
        async with chromium() as launched:
            yield launched
    except BrowserMissing as exc:
        # A failure, not a skip: `make test` installs the browser, so missing means broken.
        pytest.fail(str(exc))


@pytest.fixture
def shots(request: pytest.FixtureRequest) -> Shots:
    return Shots(request.node.name)
