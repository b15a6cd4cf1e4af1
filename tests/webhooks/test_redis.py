"""Webhooks across gateway processes on a real Redis: each cluster event reaches the receiver
exactly once, through joins and leaves on either instance, a SIGKILL, and a receiver that is
down; a full stream drops the oldest events nobody took, and counts them."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from realtime.presence.redis import WEBHOOK_DROPPED, WEBHOOK_GROUP, WEBHOOK_STREAM
from realtime.testing.gateway import (
    GatewayProcess,
    make_settings,
    run_gateway,
    spawn_gateway,
    ws_client,
)
from realtime.testing.services import RedisServer
from realtime.testing.waiting import wait_until_async
from realtime.webhooks.redis import RedisWebhooks
from tests.presence.test_gateways import env, join
from tests.server.test_metrics import scrape, value
from tests.webhooks.receiver import SECRET, Receiver, receiver

pytestmark = pytest.mark.integration


def hook_env(redis: RedisServer, r: Receiver, **extra: str) -> dict[str, str]:
    return env(redis, WEBHOOK_URL=r.url, WEBHOOK_SECRET=SECRET, **extra)


@contextlib.asynccontextmanager
async def instance(
    redis: RedisServer, r: Receiver, log: Path, **extra: str
) -> AsyncIterator[GatewayProcess]:
    async with spawn_gateway(hook_env(redis, r, **extra), str(log)) as g:
        yield g


async def settled(redis: RedisServer) -> None:
    """Every event in the stream was delivered (acked and deleted): what the receiver holds
    now is all it will get."""
    client = aioredis.Redis.from_url(redis.url)
    try:

        async def empty() -> bool:
            pending = await client.xpending(WEBHOOK_STREAM, WEBHOOK_GROUP)
            return int(await client.xlen(WEBHOOK_STREAM)) == 0 and pending["pending"] == 0

        try:
            await wait_until_async(empty, timeout=15, message="webhook stream drained")
        except TimeoutError as exc:
            left = await client.xrange(WEBHOOK_STREAM)
            pending = await client.xpending(WEBHOOK_STREAM, WEBHOOK_GROUP)
            raise AssertionError(f"left in the stream: {left}; pending: {pending}") from exc
    finally:
        await client.aclose()


def in_order(r: Receiver, channel: str) -> list[tuple[str, Any]]:
    """The channel's events in stream order (two instances deliver side by side)."""
    mine = [e for e in r.events if e["channel"] == channel]
    mine.sort(key=lambda e: tuple(int(p) for p in e["id"].split("-")))
    return [(e["name"], e.get("user_id")) for e in mine]


async def test_each_event_once_across_two_instances(
    redis: RedisServer, tmp_path: Path, channel: str
) -> None:
    async with receiver() as r:
        async with (
            instance(redis, r, tmp_path / "g1.log") as g1,
            instance(redis, r, tmp_path / "g2.log") as g2,
        ):
            for _ in range(3):
                async with ws_client(g2.ws_url + "?user_id=a") as a2:
                    async with ws_client(g1.ws_url + "?user_id=a") as a1:
                        await join(a1, channel)
                        await join(a2, channel)  # a again, on the other instance
                        async with ws_client(g2.ws_url + "?user_id=b") as b:
                            await join(b, channel)
                            await r.wait_for(channel, 3)
                    # a's connection on g1 closed; a2 keeps a present: nothing yet
                    async with ws_client(g1.ws_url + "?user_id=c") as c:
                        await join(c, channel)
                        await c.request({"type": "presence_leave", "channel": channel})
                await settled(redis)
                assert in_order(r, channel) == [
                    ("channel_occupied", None),
                    ("member_added", "a"),
                    ("member_added", "b"),
                    ("member_removed", "b"),
                    ("member_added", "c"),
                    ("member_removed", "c"),
                    ("member_removed", "a"),
                    ("channel_vacated", None),
                ]
                assert r.duplicates == 0 and r.forged == 0
                r.events.clear()


async def test_a_killed_instance_members_leave_once(
    redis: RedisServer, tmp_path: Path, channel: str
) -> None:
    # g1 may die between the receiver's 2xx and its XACK: g2 then sends that batch again
    # after the claim time (the same ids; the receiver drops them).
    fast = {"WEBHOOK_CLAIM_SECONDS": "2", "WEBHOOK_TIMEOUT_SECONDS": "0.5"}
    async with receiver() as r:
        async with (
            instance(redis, r, tmp_path / "g1.log", **fast) as g1,
            instance(redis, r, tmp_path / "g2.log", **fast) as g2,
        ):
            async with ws_client(g2.ws_url + "?user_id=b") as b:
                async with ws_client(g1.ws_url + "?user_id=a") as a:
                    await join(a, channel)
                    await join(b, channel)
                    await r.wait_for(channel, 3)
                    g1.process.send_signal(signal.SIGKILL)
                    g1.process.wait()
                    # a's entries expire after the TTL (2 s); g2 reaps: a goes, b stays.
                    await r.wait_for(channel, 4)
                    assert in_order(r, channel)[3] == ("member_removed", "a")
                await b.request({"type": "presence_leave", "channel": channel})
                await settled(redis)
        assert in_order(r, channel) == [
            ("channel_occupied", None),
            ("member_added", "a"),
            ("member_added", "b"),
            ("member_removed", "a"),
            ("member_removed", "b"),
            ("channel_vacated", None),
        ]


async def test_a_batch_held_by_a_killed_instance_is_taken_over(
    redis: RedisServer, tmp_path: Path, channel: str
) -> None:
    """The receiver is down while the only instance holds the batch; that instance is killed;
    another one takes the batch over once it has been idle WEBHOOK_CLAIM_SECONDS and delivers it
    when the receiver is back, with the killed instance's member's leave."""
    fast = {"WEBHOOK_CLAIM_SECONDS": "2", "WEBHOOK_TIMEOUT_SECONDS": "0.5"}
    async with receiver() as r:
        r.status = 503
        async with instance(redis, r, tmp_path / "g1.log", **fast) as g1:
            async with ws_client(g1.ws_url + "?user_id=a") as a:
                await join(a, channel)
                await wait_until_async(lambda: r.posts >= 2, message="g1 retrying its batch")
                g1.process.send_signal(signal.SIGKILL)
                g1.process.wait()
        async with instance(redis, r, tmp_path / "g2.log", **fast) as g2:
            async with ws_client(g2.ws_url + "?user_id=w") as w:
                await w.subscribe(channel, "presence")  # g2 serves the channel: it reaps a
                r.status = 200
                await r.wait_for(channel, 4)
            await settled(redis)
        assert in_order(r, channel) == [
            ("channel_occupied", None),
            ("member_added", "a"),
            ("member_removed", "a"),
            ("channel_vacated", None),
        ]


async def test_a_full_stream_drops_what_nobody_took_and_counts_it(
    redis: RedisServer, channel: str
) -> None:
    async with receiver() as r:
        settings = make_settings(
            **hook_env(redis, r, WEBHOOK_QUEUE_SIZE="3", WEBHOOK_EVENTS="occupied,member_added")
        )
        async with run_gateway(settings) as g:
            hooks = g.node.webhooks
            assert isinstance(hooks, RedisWebhooks)
            client = aioredis.Redis.from_url(redis.url)
            before = int(await client.get(WEBHOOK_DROPPED) or 0)
            await client.aclose()
            r.status = 503
            async with contextlib.AsyncExitStack() as stack:
                first = await stack.enter_async_context(ws_client(g.ws_url + "?user_id=u0"))
                await join(first, channel)
                # The instance took [occupied, u0] and retries it; six more joins then fill
                # the stream (3) and push out u1..u3: nobody had taken them.
                await wait_until_async(lambda: r.posts >= 1, message="first POST")
                for i in range(1, 7):
                    c = await stack.enter_async_context(ws_client(g.ws_url + f"?user_id=u{i}"))
                    await join(c, channel)
                await wait_until_async(
                    lambda: hooks.dropped - before == 3, message=f"3 dropped ({before} before)"
                )
                # /metrics shows the cluster-wide count the delivery loop read from Redis.
                samples = await scrape(g)
                assert value(samples, "realtime_webhook_stream_dropped") == hooks.dropped
                r.status = 200
                await r.wait_for(channel, 5)
                assert in_order(r, channel) == [
                    ("channel_occupied", None),
                    *(("member_added", f"u{i}") for i in (0, 4, 5, 6)),
                ]
                await settled(redis)


async def test_a_live_instance_keeps_its_batch_while_the_receiver_is_down(
    redis: RedisServer, tmp_path: Path, channel: str
) -> None:
    """Down for several claim times: the instance retrying renews its hold, so the other one
    never takes the batch over and sends it too."""
    fast = {"WEBHOOK_CLAIM_SECONDS": "1.2", "WEBHOOK_TIMEOUT_SECONDS": "0.5"}
    async with receiver() as r:
        r.status = 503
        async with (
            instance(redis, r, tmp_path / "g1.log", **fast) as g1,
            instance(redis, r, tmp_path / "g2.log", **fast),
        ):
            async with ws_client(g1.ws_url + "?user_id=a") as a:
                await join(a, channel)
                start = r.posts
                holders: set[bytes] = set()
                client = aioredis.Redis.from_url(redis.url)

                async def retried_long() -> bool:
                    pending = await client.xpending(WEBHOOK_STREAM, WEBHOOK_GROUP)
                    holders.update(c["name"] for c in pending["consumers"])
                    return r.posts >= start + 6

                # 6 more attempts: about 5 s, 4 claim times, waits up to the cap.
                await wait_until_async(retried_long, timeout=30, interval=0.05)
                await client.aclose()
                assert len(holders) == 1, f"the batch changed hands: {holders}"
                r.status = 200
                await r.wait_for(channel, 2)
                await settled(redis)
        assert in_order(r, channel) == [("channel_occupied", None), ("member_added", "a")]
        assert r.duplicates == 0
