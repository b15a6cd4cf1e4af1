"""Racing presence changes from two instances reach every subscriber as events, in order.

The trial of issue #15, on each Redis deployment: two real gateway processes, a watcher on
each (and one that asked for ``presence_diff``), and in every round concurrent joins, updates
and leaves from both instances, a user with a tab on each among them. Every watcher must get
its one ``presence_sync``, then every change as an event with the next ``seq``, and no other
sync: a resync here would mean that ordering alone was taken for a gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from realtime.presence.redis import RedisPresence
from realtime.redisconn import client as redis_client
from realtime.testing.gateway import (
    Client,
    GatewayProcess,
    make_settings,
    run_gateway,
    spawn_gateway,
    ws_client,
)
from realtime.testing.services import redis_cluster, redis_sentinel_setup
from realtime.testing.waiting import wait_until_async
from realtime.wire.messages import Member
from tests.brokers.deployments import cluster_env, sentinel_env
from tests.presence.views import Watcher, watching

pytestmark = pytest.mark.integration

ROUNDS = 30
# Per round: joins of alice, carol and dave (his second tab: an update), two updates, three
# leaves (dave's first tab to close leaves nothing).
EVENTS = 9
EXPECTED = {
    "alice": ["presence_join", "presence_update", "presence_leave"],
    "carol": ["presence_join", "presence_update", "presence_leave"],
    "dave": ["presence_join", "presence_update", "presence_leave"],
}


@pytest.fixture(scope="module", params=["standalone", "sentinel", "cluster"])
def deployment(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    if request.param == "standalone":
        server = request.getfixturevalue("redis")
        yield {
            "BROADCAST_MQ_TYPE": "redis",
            "PRESENCE_STORE": "redis",
            "REDIS_URL": server.url,
            "REDIS_CLUSTER": "",
            "REDIS_SENTINELS": "",
            "REDIS_SENTINEL_MASTER": "",
        }
    elif request.param == "sentinel":
        with redis_sentinel_setup() as setup:
            yield sentinel_env(setup)
    else:
        with redis_cluster() as cluster:
            yield cluster_env(cluster)


@contextlib.asynccontextmanager
async def two_instances(
    env: dict[str, str], tmp_path: Path
) -> AsyncIterator[tuple[GatewayProcess, GatewayProcess]]:
    full = {**env, "PRESENCE_DIFF_WINDOW_MS": "20", "LOG_LEVEL": "warning"}
    async with (
        spawn_gateway(full, str(tmp_path / "a.log")) as a,
        spawn_gateway(full, str(tmp_path / "b.log")) as b,
    ):
        yield a, b


async def change(client: Client, kind: str, channel: str, **meta: Any) -> None:
    frame: dict[str, Any] = {"type": kind, "channel": channel}
    if kind != "presence_leave":
        frame["payload"] = meta
    await client.request(frame)


def events_by_user(watcher: Watcher) -> dict[str, list[str]]:
    seen: dict[str, list[str]] = {}
    for frame in watcher.view.frames:
        if frame["type"] in ("presence_join", "presence_update", "presence_leave"):
            seen.setdefault(frame["user_id"], []).append(frame["type"])
    return seen


async def one_round(
    a: GatewayProcess, b: GatewayProcess, users: dict[str, Client], number: int
) -> list[str]:
    """One round on a fresh channel; returns what each watcher got wrong (nothing, on success)."""
    channel = f"order-{number}-{uuid.uuid4().hex[:8]}"
    alice, carol, dave_a, dave_b = (users[k] for k in ("alice", "carol", "dave_a", "dave_b"))
    async with (
        watching(a.ws_url, channel, "wa") as on_a,
        watching(b.ws_url, channel, "wb") as on_b,
        watching(b.ws_url, channel, "wd") as diff,
    ):
        await on_a.subscribe()
        await on_b.subscribe()
        await diff.subscribe(presence_diff=True)
        watchers = {"on A": on_a, "on B": on_b, "diff on B": diff}
        await asyncio.gather(
            change(alice, "presence_join", channel, n="alice"),
            change(carol, "presence_join", channel, n="carol"),
            change(dave_a, "presence_join", channel, tab="a"),
            change(dave_b, "presence_join", channel, tab="b"),
        )
        await asyncio.gather(
            change(alice, "presence_update", channel, s="away"),
            change(carol, "presence_update", channel, s="busy"),
        )
        await asyncio.gather(
            *(change(c, "presence_leave", channel) for c in (alice, carol, dave_a, dave_b))
        )

        def all_caught_up() -> bool:
            return all(w.view.version == EVENTS for w in watchers.values())

        with contextlib.suppress(TimeoutError):
            await wait_until_async(all_caught_up, timeout=5, interval=0.01)
        wrong = []
        for name, w in watchers.items():
            problems = list(w.view.errors)
            if w.view.syncs != 1:
                problems.append(f"{w.view.syncs} presence_sync frames")
            if w.view.version != EVENTS or w.view.members:
                problems.append(f"ended at version {w.view.version} with {w.view.members}")
            if w is not diff and events_by_user(w) != EXPECTED:
                problems.append(f"events {events_by_user(w)}")
            if problems:
                trace = [(f["type"], f.get("seq", f.get("version"))) for f in w.view.frames]
                wrong.append(f"round {number}, watcher {name}: {problems}; frames {trace}")
        return wrong


async def test_racing_changes_from_two_instances_arrive_as_events_in_order(
    deployment: dict[str, str], tmp_path: Path
) -> None:
    async with (
        two_instances(deployment, tmp_path) as (a, b),
        ws_client(a.ws_url + "?user_id=alice") as alice,
        ws_client(b.ws_url + "?user_id=carol") as carol,
        ws_client(a.ws_url + "?user_id=dave") as dave_a,
        ws_client(b.ws_url + "?user_id=dave") as dave_b,
    ):
        users = {"alice": alice, "carol": carol, "dave_a": dave_a, "dave_b": dave_b}
        wrong: list[str] = []
        for number in range(ROUNDS):
            wrong += await one_round(a, b, users, number)
        assert not wrong, f"{len(wrong)} of {3 * ROUNDS} views went wrong:\n" + "\n".join(wrong)


async def test_a_lost_event_still_resyncs_and_is_counted(deployment: dict[str, str]) -> None:
    channel = f"lost-{uuid.uuid4().hex[:8]}"
    settings = make_settings(**deployment)
    async with (
        run_gateway(settings) as gateway,
        watching(gateway.ws_url, channel) as watcher,
        ws_client(gateway.ws_url + "?user_id=bob") as bob,
    ):
        await watcher.subscribe()
        # A change whose event never reaches the bus: made in Redis, then dropped.
        store = RedisPresence(redis_client(settings.redis), 60, publish_in_script=False)  # type: ignore[arg-type]

        async def lose(channel: str, data: bytes) -> None:
            pass

        await store.start(lose)
        try:
            await store.join(channel, "elsewhere.1", Member("ghost"))
        finally:
            await store.close()
        await change(bob, "presence_join", channel, n="bob")
        # bob's event (seq 2) comes ahead of the lost one, which never comes: a fresh sync.
        await wait_until_async(lambda: watcher.view.syncs == 2, timeout=10)
        assert watcher.users() == {"ghost", "bob"}
        assert watcher.view.errors == []
        assert gateway.node.presence_resyncs == 1
        assert gateway.node.presence_reordered == 0
