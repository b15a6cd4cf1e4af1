"""``realtime check``: the effective settings (secrets masked), then whether the broker(s) and
the presence store answer, through the gateway's own start and liveness probe. Exit 0: all
work; 1: something does not (the lines say what); 2: a bad setting."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable

from realtime.backends import build_node
from realtime.config import OPTIONS, Settings
from realtime.errors import StartError

# Values of these are secrets, or hold them (keys, passwords, a URL's password).
_SECRET = re.compile(r"PASSWORD|SECRET|API_KEYS|TOKEN")
_USERINFO = re.compile(r"(?<=://)[^/@\s]*@")
MASK = "********"


def masked(name: str, value: str) -> str:
    if _SECRET.search(name):
        return MASK
    # user:password@ in any URL (REDIS_URL, a hook's URL): the user stays, the password goes.
    return _USERINFO.sub(
        lambda m: m.group(0).split(":", 1)[0] + (f":{MASK}@" if ":" in m.group(0) else "@"),
        value,
    )


def settings_lines(settings: Settings) -> list[str]:
    lines = []
    for option in OPTIONS:
        given = settings.get(option.name)
        value = given if given is not None else option.default
        if value is None:
            continue
        source = "" if given is not None else "  (default)"
        lines.append(f"{option.name}={masked(option.name, value)}{source}")
    return lines


async def probe(settings: Settings, say: Callable[[str], None]) -> bool:
    """Start the node as the gateway does and wait for its first liveness round."""
    node = build_node(settings)
    try:
        await node.start()
    except StartError as exc:
        say(f"FAIL start: {exc}")
        return False
    try:
        liveness = node.liveness
        if not liveness.enabled:
            say("ok   backends started (BROKER_PROBE_INTERVAL_SECONDS=0: no round trip tried)")
            return True
        deadline = time.monotonic() + liveness.interval + liveness.timeout + 1
        # Polled: the probe loop has no event to wait on, and this runs once per command.
        while not liveness.healthy and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        report = liveness.report()
        ok = True
        for kind, state in report["probes"].items():
            ok &= bool(state["ok"])
            verdict = "ok  " if state["ok"] else "FAIL"
            say(f"{verdict} {kind} broker ({settings.broker}): {state['error'] or 'round trip'}")
        store = report["presence_store"]
        ok &= bool(store["ok"])
        detail = "ping" if store["checked"] else "not pingable (in-process)"
        if store.get("error"):
            detail = store["error"]
        verdict = "ok  " if store["ok"] else "FAIL"
        say(f"{verdict} presence store ({settings.presence_store}): {detail}")
        return ok
    finally:
        await node.close()


def run(settings: Settings) -> int:
    for line in settings_lines(settings):
        print(line)
    print()
    ok = asyncio.run(probe(settings, print))
    print("all backends work" if ok else "some backends do not work")
    return 0 if ok else 1
