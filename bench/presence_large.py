"""Large-channel presence figures: one command, a real Redis and a real gateway process.

    .venv/bin/python bench/presence_large.py [--members 10000] [--burst 1000]

Measures (1) the ``presence_sync`` of a channel with ``--members`` members: time from the
subscribe to its ack, frames and bytes, as one frame (a seed client) and chunked
(``presence_chunk``), and the gateway's /healthz latency meanwhile; (2) a burst of ``--burst``
joins spread over one second: frames a ``presence_diff`` subscriber and a seed-style subscriber
receive, and how long after the last join each view is complete. The members are written by a
presence store in this process, which stands for another gateway instance.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from realtime.presence.redis import RedisPresence
from realtime.redisconn import connect
from realtime.testing.gateway import spawn_gateway, ws_client
from realtime.testing.services import redis_server
from realtime.wire.messages import Member


async def fill(store: RedisPresence, channel: str, count: int, prefix: str) -> None:
    for start in range(0, count, 50):
        await asyncio.gather(
            *(
                store.join(channel, "bench.1", Member(f"{prefix}{i}", {"name": f"user {i}"}))
                for i in range(start, min(count, start + 50))
            )
        )


async def timed_sync(url: str, channel: str, **extra: Any) -> dict[str, float]:
    async with ws_client(url + "?user_id=bench", max_size=None) as client:
        started = time.perf_counter()
        await client.send(
            {"type": "subscribe", "channel": channel, "listen": ["presence"], "ref": 1, **extra}
        )
        frames = size = users = 0
        while True:
            raw = await asyncio.wait_for(client.ws.recv(), 30)
            frame = json.loads(raw)
            if frame["type"] == "ack":
                break
            frames += 1
            size += len(raw)
            users += len(frame["users"])
        return {
            "ms": (time.perf_counter() - started) * 1000,
            "frames": frames,
            "bytes": size,
            "users": users,
        }


async def healthz_during(url: str, work: Any) -> tuple[Any, float]:
    """Run ``work`` while polling /healthz; returns its result and the worst latency in ms."""
    worst = 0.0
    done = asyncio.Event()

    async def poll() -> None:
        nonlocal worst
        async with httpx.AsyncClient() as http:
            while not done.is_set():
                started = time.perf_counter()
                await http.get(url + "/healthz")
                worst = max(worst, (time.perf_counter() - started) * 1000)
                await asyncio.sleep(0.002)

    poller = asyncio.create_task(poll())
    try:
        result = await work
    finally:
        done.set()
        await poller
    return result, worst


async def burst(url: str, store: RedisPresence, channel: str, count: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    async with (
        ws_client(url + "?user_id=diff", max_size=None) as diff,
        ws_client(url + "?user_id=seed", max_size=None) as seed,
    ):
        for client, extra in ((diff, {"presence_diff": True}), (seed, {})):
            await client.send(
                {"type": "subscribe", "channel": channel, "listen": ["presence"], "ref": 1, **extra}
            )
            while (await client.recv())["type"] != "ack":
                pass

        async def count_until_complete(client: Any, name: str) -> None:
            seen: set[str] = set()
            frames = 0
            while len(seen) < count:
                frame = json.loads(await asyncio.wait_for(client.ws.recv(), 30))
                frames += 1
                if frame["type"] == "presence_diff":
                    seen.update(u["user_id"] for u in frame["joins"])
                else:
                    seen.add(frame["user_id"])
            results[name] = {"frames": frames, "done_at": time.perf_counter()}

        readers = [
            asyncio.create_task(count_until_complete(diff, "presence_diff")),
            asyncio.create_task(count_until_complete(seed, "single events")),
        ]
        started = time.perf_counter()
        step = max(1, count // 10)
        for start in range(0, count, step):  # ten slices over one second
            await asyncio.gather(
                *(
                    store.join(channel, "bench.2", Member(f"b{i}"))
                    for i in range(start, min(count, start + step))
                )
            )
            last_join = time.perf_counter()
            await asyncio.sleep(max(0.0, started + (start + step) / count - last_join))
        await asyncio.gather(*readers)
    for value in results.values():
        value["after_last_join_ms"] = (value.pop("done_at") - last_join) * 1000
    results["burst_seconds"] = last_join - started
    return results


async def main(members: int, burst_size: int, repeat: int) -> None:
    with redis_server() as redis, tempfile.TemporaryDirectory() as tmp:
        env = {
            "BROADCAST_MQ_TYPE": "redis",
            "PRESENCE_STORE": "redis",
            "REDIS_URL": redis.url,
            "LOG_LEVEL": "warning",
        }
        async with spawn_gateway(env, str(Path(tmp) / "gateway.log")) as gateway:
            store = RedisPresence(connect(redis.url), ttl=600)
            try:
                started = time.perf_counter()
                await fill(store, "large", members, "u")
                print(f"filled {members} members in {time.perf_counter() - started:.1f}s")
                for name, extra in (
                    ("one frame", {}),
                    ("chunks of 1000", {"presence_chunk": 1000}),
                ):
                    runs = []
                    for _ in range(repeat):
                        work = timed_sync(gateway.ws_url, "large", **extra)
                        result, worst = await healthz_during(gateway.url, work)
                        runs.append({**result, "healthz_worst_ms": worst})
                    median = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
                    print(
                        f"sync {name}: {median['ms']:.0f} ms, {median['frames']:.0f} frames, "
                        f"{median['bytes'] / 1e6:.2f} MB, {median['users']:.0f} users; "
                        f"/healthz worst {median['healthz_worst_ms']:.0f} ms (median of {repeat})"
                    )
                result = await burst(gateway.ws_url, store, "burst", burst_size)
                print(f"burst of {burst_size} joins over {result.pop('burst_seconds'):.2f}s:")
                for name, value in result.items():
                    print(
                        f"  {name}: {value['frames']} frames, complete "
                        f"{value['after_last_join_ms']:.0f} ms after the last join"
                    )
            finally:
                await store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--burst", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.members, args.burst, args.repeat))
