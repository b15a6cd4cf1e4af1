"""``python -m tests.faults.measure [FAULT ...] [--json PATH]``: run the fault scenarios with
the issue's durations (Redis down 7 s, frozen 12 s) and print the figures as the Markdown
table docs/reliability.md shows. Default: every fault.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import sys
import tempfile
import time
from pathlib import Path

from tests.faults.harness import HEADER, Figures, dump
from tests.faults.scenarios import GATEWAY_ENV, SCENARIOS


async def main(names: list[str], durations: dict[str, float]) -> list[Figures]:
    results = []
    with tempfile.TemporaryDirectory(prefix="realtime-faults-") as tmp:
        for name in names:
            scenario = SCENARIOS[name]
            kwargs = {k: v for k, v in durations.items() if k in scenario.__code__.co_varnames}
            started = time.monotonic()
            figures = await scenario(Path(tmp), **kwargs)
            print(f"{name}: {time.monotonic() - started:.0f} s", file=sys.stderr, flush=True)
            results.append(figures)
    return results


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("faults", nargs="*", choices=[[], *SCENARIOS], default=[])
    parser.add_argument("--down", type=float, default=7.0, help="seconds a server stays down")
    parser.add_argument("--frozen", type=float, default=12.0, help="seconds Redis is SIGSTOPped")
    parser.add_argument("--asleep", type=float, default=5.0, help="DEBUG SLEEP seconds")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--gateway-src",
        type=Path,
        help="run the gateways from this source tree (e.g. `git archive main` unpacked)",
    )
    args = parser.parse_args()
    names = args.faults or list(SCENARIOS)
    if args.gateway_src:
        GATEWAY_ENV["PYTHONPATH"] = str(args.gateway_src.resolve())
    durations = {"down": args.down, "frozen": args.frozen, "asleep": args.asleep}
    results = asyncio.run(main(names, durations))
    machine = (
        f"{time.strftime('%Y-%m-%d')}, {platform.machine()}, "
        f"{len(__import__('os').sched_getaffinity(0))} cores, Python {platform.python_version()}"
    )
    print(f"\n{machine}\n\n{HEADER}")
    for figures in results:
        print(figures.row())
        if figures.exit_after is not None:
            print(f"  ({figures.fault}): exited {figures.exit_after:.2f} s after SIGTERM")
        for note in figures.notes:
            print(f"  note ({figures.fault}): {note}")
    if args.json:
        args.json.write_text(dump(results))


if __name__ == "__main__":
    cli()
