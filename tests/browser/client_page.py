"""A page running realtime.js for the browser tests: the module the gateway serves, loaded
with a dynamic import() into a page of the gateway's own origin (or another one's)."""

from __future__ import annotations

import asyncio
from typing import Any

from playwright.async_api import Browser, Page

# Opens a client in the page as window.rt and subscribes to `channel` as window.sub; keeps
# what arrives in window.got (broadcasts), window.states, window.errors (codes),
# window.recovered, window.members (user -> meta) and window.frames (every frame, with its
# direction), and shows it in the page for the screenshots.
OPEN = """
async ([module, base, clientOptions, channel, options]) => {
    const { Realtime } = await import(module);
    window.got = []; window.states = []; window.errors = []; window.recovered = [];
    window.members = {}; window.frames = [];
    const show = () => {
        document.body.style.font = "14px monospace";
        document.body.innerText = [
            "user: " + (clientOptions.userId || "(token)") + "  state: " + window.rt.state,
            "members: " + JSON.stringify(window.members),
            "broadcasts: " + JSON.stringify(window.got.map((m) => m.payload)),
            "recovered: " + JSON.stringify(window.recovered),
            "errors: " + JSON.stringify(window.errors),
            "states: " + JSON.stringify(window.states),
        ].join("\\n");
    };
    const opts = { minDelay: 100, maxDelay: 1000, ...clientOptions };
    if (opts.tokens) {
        // getToken hands out the listed tokens in turn, the last one again and again.
        const tokens = opts.tokens;
        window.tokenCalls = 0;
        opts.getToken = async () => tokens[Math.min(window.tokenCalls++, tokens.length - 1)];
        delete opts.tokens;
    }
    window.rt = new Realtime(base, opts);
    window.rt.on("state", (s) => { window.states.push(s); show(); });
    window.rt.on("error", (e) => {
        window.errors.push(e.closeCode ? e.code + ":" + e.closeCode : e.code);
        show();
    });
    window.rt.on("frame", (f, direction) => { window.frames.push([direction, f]); });
    try {
        await window.rt.connect();
    } catch (e) {
        show();
        return { code: e.code, status: e.status, message: e.message };
    }
    window.sub = window.rt.subscribe(channel, options);
    window.sub.on("broadcast", (m) => { window.got.push(m); show(); });
    window.sub.on("recovered", (info) => { window.recovered.push(info); show(); });
    window.sub.on("members", (members) => {
        window.members = Object.fromEntries([...members].map(([id, m]) => [id, m.meta]));
        show();
    });
    await window.sub.ready;
    show();
    return null;
}
"""


async def open_client(
    browser: Browser,
    base: str,
    channel: str,
    *,
    origin: str | None = None,
    client: dict[str, Any] | None = None,
    **options: Any,
) -> Page:
    """A page of ``origin`` (default: the gateway's own) with a client of the gateway at
    ``base`` subscribed to ``channel``; fails if connecting fails."""
    page = await browser.new_page()
    await page.goto((origin or base) + "/healthz")
    failed = await page.evaluate(
        OPEN, [base + "/client/realtime.js", base, client or {}, channel, options]
    )
    assert failed is None, failed
    return page


async def open_failing(
    browser: Browser, base: str, channel: str, client: dict[str, Any]
) -> tuple[Page, dict[str, Any]]:
    """Like :func:`open_client` for a client whose connect() must reject: the page and the
    error (code, status, message)."""
    page = await browser.new_page()
    await page.goto(base + "/healthz")
    # Bounded: a client that never gives up would otherwise hang the test until its timeout.
    failed = await asyncio.wait_for(
        page.evaluate(OPEN, [base + "/client/realtime.js", base, client, channel, {}]), 15
    )
    assert failed is not None, "connect() resolved"
    return page, failed
