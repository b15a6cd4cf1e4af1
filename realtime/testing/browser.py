"""A real browser for tests: Debian's ``chromium`` driven by Playwright's async API.

Playwright is told where the browser is (``executable_path``) instead of downloading its own:
the machines that run our tests cannot reach a browser download host, and the system package
is what a Debian deployment would open the pages with anyway. ``scripts/install-services
chromium`` installs it; ``REALTIME_CHROMIUM`` names another binary.

Screenshots go under ``test-output/browser/<test>/`` at the repository root (or under
``REALTIME_TEST_OUTPUT``), kept after the run as the tests' output: :class:`Shots` numbers them
in the order they were taken, so the directory reads as the test's steps.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from playwright.async_api import Browser, Page, async_playwright

CANDIDATES = ("chromium", "chromium-browser", "/usr/lib/chromium/chromium")
INSTALL_HINT = "install it with `scripts/install-services chromium` (Debian's chromium package)"


class BrowserMissing(RuntimeError):
    """No Chromium binary on this machine."""


def chromium_path() -> str:
    """The Chromium binary: ``REALTIME_CHROMIUM`` if set, else the first candidate on PATH."""
    named = os.environ.get("REALTIME_CHROMIUM")
    if named:
        if not Path(named).is_file():
            raise BrowserMissing(f"REALTIME_CHROMIUM={named} is not a file")
        return named
    for candidate in CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    raise BrowserMissing(f"no chromium binary found; {INSTALL_HINT}")


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """A headless Chromium, closed on exit. ``--no-sandbox``: CI runs tests as root, where
    Chromium refuses its sandbox; the pages it opens are our own, on 127.0.0.1."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium_path(), headless=True, args=["--no-sandbox"]
        )
        try:
            yield browser
        finally:
            await browser.close()


def output_root() -> Path:
    named = os.environ.get("REALTIME_TEST_OUTPUT")
    if named:
        return Path(named)
    return Path(__file__).resolve().parents[2] / "test-output"


class Shots:
    """Numbered screenshots of one test: ``await shots.take(page, "joined")`` writes
    ``01-joined.png`` (``02-...`` next), and of two pages ``01-joined-a.png`` and so on."""

    def __init__(self, test_name: str) -> None:
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", test_name).strip("_")
        self.directory = output_root() / "browser" / safe
        shutil.rmtree(self.directory, ignore_errors=True)
        self.directory.mkdir(parents=True)
        self.count = 0

    async def take(self, step: str, *pages: Page) -> list[Path]:
        self.count += 1
        paths = []
        for index, page in enumerate(pages):
            suffix = f"-{chr(ord('a') + index)}" if len(pages) > 1 else ""
            path = self.directory / f"{self.count:02d}-{step}{suffix}.png"
            await page.screenshot(path=str(path), full_page=True)
            paths.append(path)
        return paths
