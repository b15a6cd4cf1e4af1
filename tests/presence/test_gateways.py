"""Presence across real gateway processes on a real Redis: the issue's cases end to end.

Every test ends by comparing each client's view, built only from the frames it received,
against the truth.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import random
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from realtime.presence.redis import RedisPresence
from realtime.redisconn import connect
from realtime.testing.gateway import Client, GatewayProcess, spawn_gateway, ws_client
from realtime.testing.services import RedisServer, redis_server
from realtime.testing.waiting import wait_until_async
from realtime.wire.messages import Member
from tests.presence.views import Watcher, watching

pytestmark = pytest.mark.integration

TTL = 2
# A killed instance's users are announced gone within the TTL plus the reaper's period (0.5 s
# at TTL 2) plus delivery; the test allows a little more for a busy 2-core machine.
LEAVE_BOUND = TTL + 2.5
ROUNDS = 8


def env(redis: RedisServer, **extra: str) -> dict[str, str]:
    return {
        "BROADCAST_MQ_TYPE": "redis",
        "PRESENCE_STORE": "redis",
        "REDIS_URL": redis.url,
        "PRESENCE_TTL_SECONDS": str(TTL),
        "LOG_LEVEL": "info",
        **extra,
    }


@contextlib.asynccontextmanager
async def gateways(
    redis: RedisServer, tmp_path: Path, count: int, **extra: str
) -> AsyncIterator[list[GatewayProcess]]:
    async with contextlib.AsyncExitStack() as stack:
        started = [
            await stack.enter_async_context(
                spawn_gateway(env(redis, **extra), str(tmp_path / f"g{i}.log"))
            )
            for i in range(count)
        ]
        yield started


async def join(client: Client, channel: str, **meta: Any) -> None:
    await client.request({"type": "presence_join", "channel": channel, "payload": meta})


async def fresh_sync(url: str, channel: str) -> dict[str, Any]:
    async with ws_client(url + "?user_id=probe", max_size=None) as probe:
        sync = await probe.subscribe(channel, "presence")
        assert sync is not None
        return {u["user_id"]: u.get("meta", {}) for u in sync["users"]}


async def converged(watchers: list[Watcher], truth: set[str], timeout: float = 10) -> None:
    async def all_equal() -> bool:
        return all(w.users() == truth for w in watchers)

    try:
        await wait_until_async(all_equal, timeout=timeout)
    except TimeoutError:
        views = [(sorted(w.users()), w.view.errors, w.view.frames[-5:]) for w in watchers]
        raise AssertionError(f"views never became {sorted(truth)}: {views}") from None


async def test_one_member_across_connections_and_instances(
    redis: RedisServer, tmp_path: Path, channel: str
) -> None:
    async with gateways(redis, tmp_path, 3) as (g1, g2, g3):
        async with watching(g3.ws_url, channel) as w:
            await w.subscribe()
            async with ws_client(g1.ws_url + "?user_id=u") as tab1:
                await join(tab1, channel, tab=1)
                async with ws_client(g2.ws_url + "?user_id=u") as tab2:
                    await join(tab2, channel, tab=2)
                    await wait_until_async(lambda: len(w.view.frames) == 3)
                # tab2 (another instance) closed; u stays. A marker shows nothing came between.
                async with ws_client(g3.ws_url + "?user_id=m") as marker:
                    await join(marker, channel)
                    await wait_until_async(lambda: "m" in w.users())
            await converged([w], set())
            kinds = [(f["type"], f.get("user_id")) for f in w.view.frames]
            assert kinds == [
                ("presence_sync", None),
                ("presence_join", "u"),
                ("presence_update", "u"),
                ("presence_join", "m"),
                ("presence_leave", "m"),
                ("presence_leave", "u"),
            ]
            assert w.view.errors == []


async def test_killed_instance_users_leave_once_within_the_bound(
    redis: RedisServer, tmp_path: Path, channel: str
) -> None:
    async with gateways(redis, tmp_path, 3) as (g1, g2, g3):
        async with (
            watching(g1.ws_url, channel) as w1,
            watching(g3.ws_url, channel) as w3,
            ws_client(g1.ws_url + "?user_id=both") as both_on_g1,
            contextlib.AsyncExitStack() as on_g2,
        ):
            await w1.subscribe()
            await w3.subscribe()
            await join(both_on_g1, channel)
            for user in ["both"] + [f"ghost{i}" for i in range(5)]:
                client = await on_g2.enter_async_context(ws_client(f"{g2.ws_url}?user_id={user}"))
                await join(client, channel, on="g2")
            truth_before = {"both"} | {f"ghost{i}" for i in range(5)}
            await converged([w1, w3], truth_before)

            killed_at = time.monotonic()
            os.kill(g2.process.pid, signal.SIGKILL)
            g2.process.wait(5)
            await converged([w1, w3], {"both"}, timeout=LEAVE_BOUND + 5)
            took = time.monotonic() - killed_at
            assert took <= LEAVE_BOUND, f"leaves took {took:.1f}s, bound {LEAVE_BOUND}s"

            # Exactly once: a later event arrives after any duplicate would have.
            async with ws_client(g3.ws_url + "?user_id=marker") as marker:
                await join(marker, channel)
                await converged([w1, w3], {"both", "marker"})
            for w in (w1, w3):
                leaves = [f["user_id"] for f in w.view.frames if f["type"] == "presence_leave"]
                assert sorted(leaves[:5]) == sorted(truth_before - {"both"})
                assert w.view.errors == []
            await converged([w1, w3], {"both"})  # the marker's close is announced too
            assert set(await fresh_sync(g3.ws_url, channel)) == {"both"}


@dataclass
class Round:
    """One randomised round: connections joining, updating, leaving and closing at random
    while watchers subscribe at random moments."""

    rng: random.Random
    urls: list[str]
    channel: str
    open_conns: dict[int, tuple[str, Client, contextlib.AsyncExitStack]] = field(
        default_factory=dict
    )
    joined: set[int] = field(default_factory=set)
    watchers: list[Watcher] = field(default_factory=list)

    async def actor(self, conn: int, user: str) -> None:
        rng = self.rng
        for _ in range(rng.randrange(3, 9)):
            await asyncio.sleep(rng.random() * 0.05)
            if conn not in self.open_conns:
                stack = contextlib.AsyncExitStack()
                url = f"{rng.choice(self.urls)}?user_id={user}"
                client = await stack.enter_async_context(ws_client(url))
                self.open_conns[conn] = (user, client, stack)
            _, client, stack = self.open_conns[conn]
            action = rng.choice(["join", "join", "update", "leave", "close"])
            if action in ("join", "update"):
                payload = {"c": conn, "r": rng.randrange(100)}
                await client.request(
                    {"type": f"presence_{action}", "channel": self.channel, "payload": payload}
                )
                self.joined.add(conn)
            elif action == "leave":
                await client.request({"type": "presence_leave", "channel": self.channel})
                self.joined.discard(conn)
            else:
                del self.open_conns[conn]
                self.joined.discard(conn)
                await stack.aclose()

    async def watcher(self, stack: contextlib.AsyncExitStack, i: int) -> None:
        await asyncio.sleep(self.rng.random() * 0.4)
        w = await stack.enter_async_context(
            watching(self.rng.choice(self.urls), self.channel, f"w{i}")
        )
        await w.subscribe(presence_diff=self.rng.random() < 0.5)
        self.watchers.append(w)

    def truth(self) -> set[str]:
        return {self.open_conns[c][0] for c in self.joined}


async def test_subscribe_racing_joins_and_leaves_sees_exactly_the_truth(
    redis: RedisServer, tmp_path: Path
) -> None:
    rng = random.Random(4)
    users = [f"u{i}" for i in range(6)]
    async with gateways(redis, tmp_path, 3) as gs:
        for number in range(ROUNDS):
            game = Round(rng, [g.ws_url for g in gs], f"race-{number}-{rng.randrange(1 << 30)}")
            async with contextlib.AsyncExitStack() as stack:
                await asyncio.gather(
                    *(game.actor(conn, users[conn % len(users)]) for conn in range(12)),
                    *(game.watcher(stack, i) for i in range(4)),
                )
                truth = game.truth()
                await converged(game.watchers, truth)
                exact = await fresh_sync(game.urls[0], game.channel)
                assert set(exact) == truth

                def same_metas() -> bool:
                    return all(w.view.members == exact for w in game.watchers)  # noqa: B023

                # A diff subscriber's last batch (updates only) may still be in its window.
                await wait_until_async(same_metas, timeout=5, message=f"round {number} metas")
                for w in game.watchers:
                    assert w.view.errors == [], f"round {number}"
                    assert w.view.syncs == 1, "no resync was needed"
            for _, _, conn_stack in game.open_conns.values():
                await conn_stack.aclose()


async def test_views_converge_after_redis_restarts_empty(tmp_path: Path, channel: str) -> None:
    with redis_server() as server:
        async with gateways(server, tmp_path, 2) as (g1, g2):
            async with (
                watching(g1.ws_url, channel) as w1,
                watching(g2.ws_url, channel) as w2,
                ws_client(g1.ws_url + "?user_id=a") as a,
                ws_client(g2.ws_url + "?user_id=b") as b,
                ws_client(g1.ws_url + "?user_id=c") as c1,
                ws_client(g2.ws_url + "?user_id=c") as c2,
            ):
                await w1.subscribe()
                await w2.subscribe(presence_diff=True)
                for client in (a, b, c1, c2):
                    await join(client, channel, n=1)
                await converged([w1, w2], {"a", "b", "c"})

                await asyncio.to_thread(server.restart)
                started = time.monotonic()
                await converged([w1, w2], {"a", "b", "c"}, timeout=15)
                raw = aioredis.Redis.from_url(server.url)
                try:
                    # Re-asserted in Redis itself, within seconds, by both instances.
                    async def reasserted() -> bool:
                        return await raw.hlen(f"presence:{channel}") == 3

                    await wait_until_async(reasserted, timeout=10)
                finally:
                    await raw.aclose()
                assert time.monotonic() - started < 10

                # And it goes on exactly after that.
                await b.request({"type": "presence_leave", "channel": channel})
                await c1.request({"type": "presence_leave", "channel": channel})
                await converged([w1, w2], {"a", "c"})
                exact = await fresh_sync(g2.ws_url, channel)
                assert set(exact) == {"a", "c"}
                for w in (w1, w2):
                    assert w.view.members == exact


async def test_caps_answer_an_error_and_store_nothing(
    redis: RedisServer, tmp_path: Path, channel: str
) -> None:
    raw = aioredis.Redis.from_url(redis.url)
    extra = {"PRESENCE_MAX_MEMBERS": "2", "PRESENCE_MAX_META_BYTES": "64"}
    try:
        async with gateways(redis, tmp_path, 1, **extra) as (g,):
            async with (
                ws_client(g.ws_url + "?user_id=a") as a,
                ws_client(g.ws_url + "?user_id=b") as b,
                ws_client(g.ws_url + "?user_id=c") as c,
            ):
                await a.send(
                    {"type": "presence_join", "channel": channel, "payload": {"x": "y" * 64}}
                )
                error = await a.expect("error", code="meta_too_large", channel=channel)
                assert "64" in error["message"]
                assert not await raw.exists(f"presence:{channel}")
                await join(a, channel)
                await join(b, channel)
                await c.send({"type": "presence_join", "channel": channel, "ref": 1})
                await c.expect("error", code="presence_full", channel=channel, ref=1)
                assert sorted(await raw.hkeys(f"presence:{channel}")) == [b"a", b"b"]
                assert set(await fresh_sync(g.ws_url, channel)) == {"a", "b"}
    finally:
        await raw.aclose()


async def test_a_burst_reaches_diff_subscribers_in_few_frames(
    redis: RedisServer, tmp_path: Path, channel: str
) -> None:
    window_ms = 100
    async with gateways(redis, tmp_path, 1, PRESENCE_DIFF_WINDOW_MS=str(window_ms)) as (g,):
        other_instance = RedisPresence(connect(redis.url), ttl=60)
        try:
            async with (
                watching(g.ws_url, channel, "d") as diff,
                watching(g.ws_url, channel) as seed,
            ):
                await diff.subscribe(presence_diff=True)
                await seed.subscribe()
                started = time.monotonic()
                for start in range(0, 1000, 100):
                    await asyncio.gather(
                        *(
                            other_instance.join(channel, "x.1", Member(f"u{i}", {"i": i}))
                            for i in range(start, start + 100)
                        )
                    )
                burst = time.monotonic() - started
                truth = {f"u{i}" for i in range(1000)}
                await converged([diff, seed], truth)
                diffs = [f for f in diff.view.frames if f["type"] == "presence_diff"]
                bound = math.ceil(burst * 1000 / window_ms) + 2
                assert 1 <= len(diffs) <= bound, (len(diffs), bound)
                events = [f for f in seed.view.frames if f["type"] == "presence_join"]
                assert len(events) == 1000  # a client that did not ask keeps single events
                assert diff.view.errors == seed.view.errors == []

            async with watching(g.ws_url, channel, "chunked") as chunked:
                await chunked.subscribe(presence_chunk=300)
                syncs = [f for f in chunked.view.frames if f["type"] == "presence_sync"]
                assert [(f["chunk"], f["chunks"]) for f in syncs] == [(i, 4) for i in range(1, 5)]
                assert len({f["version"] for f in syncs}) == 1
                assert chunked.users() == truth
        finally:
            await other_instance.close()


def test_views_module_is_shared() -> None:
    # The view logic above is what every test trusts: check it on a hand-made stream.
    from tests.presence.views import View

    view = View("c")
    for frame in (
        {"type": "presence_sync", "channel": "c", "users": [], "version": 3},
        {"type": "presence_join", "channel": "c", "user_id": "a", "seq": 4},
        {"type": "presence_diff", "channel": "c", "joins": [{"user_id": "b"}], "leaves": ["a"],
         "from_seq": 5, "seq": 7},
        {"type": "presence_leave", "channel": "c", "user_id": "b", "seq": 9},
    ):  # fmt: skip
        view.apply(json.loads(json.dumps(frame)))
    assert view.members == {}
    assert view.errors == ["event 9 after version 7"]
