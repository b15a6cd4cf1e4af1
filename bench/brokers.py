"""Publish-to-deliver latency through two gateway instances, per broker.

    python -m bench.brokers                 # redis, kafka, rabbitmq; 500 messages at 50/s each
    python -m bench.brokers --brokers redis --messages 2000 --rate 200

For each broker: a real server (started natively, as the tests do), two real gateway processes
(`python -m realtime serve`), a subscriber on instance B and a publisher on instance A. Each
broadcast carries its send time; latency is receive time minus send time on the same clock,
so it includes both gateways, the broker and the WebSocket hops. Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from realtime.testing.gateway import spawn_gateway, ws_client
from realtime.testing.services import redis_server
from realtime_kafka.testing import kafka_server
from realtime_rabbitmq.testing import rabbitmq_server

BROKERS = ("redis", "kafka", "rabbitmq")


@contextlib.contextmanager
def broker_env(name: str, redis_url: str) -> Iterator[dict[str, str]]:
    base = {"PRESENCE_STORE": "redis", "REDIS_URL": redis_url, "LOG_LEVEL": "warning"}
    if name == "redis":
        yield {**base, "BROADCAST_MQ_TYPE": "redis"}
    elif name == "kafka":
        with kafka_server() as kafka:
            yield {**base, "BROADCAST_MQ_TYPE": "kafka", "BROADCAST_MQ_ADDR": kafka.bootstrap}
    elif name == "rabbitmq":
        with rabbitmq_server() as rabbit:
            yield {**base, "BROADCAST_MQ_TYPE": "rabbitmq", "BROADCAST_RABBITMQ_URL": rabbit.url}
    else:
        raise SystemExit(f"unknown broker {name!r}; choose from {', '.join(BROKERS)}")


@contextlib.asynccontextmanager
async def two_gateways(env: dict[str, str], logs: Path) -> AsyncIterator[tuple[str, str]]:
    async with spawn_gateway(env, str(logs / "a.log")) as a:
        async with spawn_gateway(env, str(logs / "b.log")) as b:
            yield a.ws_url, b.ws_url


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def measure(a_url: str, b_url: str, messages: int, rate: float) -> dict[str, Any]:
    latencies: list[float] = []
    channel = f"bench-{time.time_ns()}"
    async with ws_client(a_url + "?user_id=pub") as pub, ws_client(b_url + "?user_id=sub") as sub:
        await sub.subscribe(channel, "broadcast")
        # Warm up: the path is live once a broadcast crosses.
        while True:
            await pub.send({"type": "broadcast", "channel": channel, "event": "warm", "payload": 0})
            with contextlib.suppress(TimeoutError):
                if (await sub.recv(timeout=1.0))["event"] == "warm":
                    break
        received = 0

        async def receive() -> None:
            nonlocal received
            while received < messages:
                frame = await sub.recv(timeout=30)
                if frame.get("event") != "m":
                    continue
                latencies.append((time.time_ns() - frame["payload"]["t"]) / 1e6)
                received += 1

        reader = asyncio.create_task(receive())
        start = time.monotonic()
        for i in range(messages):
            await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
            payload = {"t": time.time_ns(), "s": i, "p": "x" * 60}
            await pub.send(
                {"type": "broadcast", "channel": channel, "event": "m", "payload": payload}
            )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(reader, 30)
        reader.cancel()
    return {
        "sent": messages,
        "received": len(latencies),
        "lost": messages - len(latencies),
        "p50_ms": statistics.median(latencies) if latencies else None,
        "p99_ms": percentile(latencies, 0.99) if latencies else None,
        "max_ms": max(latencies) if latencies else None,
    }


async def run(brokers: Sequence[str], messages: int, rate: float) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with redis_server() as redis, tempfile.TemporaryDirectory() as tmp:
        for name in brokers:
            print(f"[{name}] starting broker and two gateways ...", file=sys.stderr, flush=True)
            with broker_env(name, redis.url) as env:
                async with two_gateways(env, Path(tmp)) as (a_url, b_url):
                    results[name] = await measure(a_url, b_url, messages, rate)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.brokers",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--brokers", default=",".join(BROKERS), help="comma-separated subset")
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--rate", type=float, default=50.0, help="broadcasts per second")
    parser.add_argument("--out", type=Path, default=None, help="JSON file (default bench/results)")
    args = parser.parse_args(argv)
    brokers = [b.strip() for b in args.brokers.split(",") if b.strip()]
    started = datetime.now(UTC)
    results = asyncio.run(run(brokers, args.messages, args.rate))
    print(f"\n{'broker':<10} {'sent':>6} {'lost':>5} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for name, r in results.items():
        print(
            f"{name:<10} {r['sent']:>6} {r['lost']:>5} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} "
            f"{r['max_ms']:>8.2f}"
        )
    out = args.out or Path("bench/results") / f"brokers-{started:%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "started": started.isoformat(),
                "machine": {"python": platform.python_version(), "kernel": platform.release()},
                "messages": args.messages,
                "rate": args.rate,
                "results": results,
            },
            indent=2,
        )
    )
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
