"""Webhooks from the embedded gateway (memory presence): the store tells the deliverer."""

from __future__ import annotations

import pytest

from realtime.testing.gateway import make_settings, run_gateway, ws_client
from realtime.testing.waiting import wait_until_async
from realtime.webhooks.memory import MemoryWebhooks
from tests.presence.test_gateways import join
from tests.server.test_metrics import scrape, value
from tests.webhooks.receiver import SECRET, receiver

pytestmark = pytest.mark.integration


def hook_env(url: str, **extra: str) -> dict[str, str]:
    return {"WEBHOOK_URL": url, "WEBHOOK_SECRET": SECRET, **extra}


async def test_members_across_connections_and_the_channel_they_fill(channel: str) -> None:
    async with receiver() as r, run_gateway(make_settings(**hook_env(r.url))) as g:
        async with ws_client(g.ws_url + "?user_id=a") as a1:
            await join(a1, channel)
            async with ws_client(g.ws_url + "?user_id=a") as a2:
                await join(a2, channel)  # a's second connection: no member_added
                async with ws_client(g.ws_url + "?user_id=b") as b:
                    await join(b, channel)
                    await r.wait_for(channel, 3)
            await r.wait_for(channel, 4)  # b gone; a still there (a1)
        await r.wait_for(channel, 6)
        assert r.of(channel) == [
            ("channel_occupied", None),
            ("member_added", "a"),
            ("member_added", "b"),
            ("member_removed", "b"),
            ("member_removed", "a"),
            ("channel_vacated", None),
        ]
        assert r.forged == 0
        assert len({e["id"] for e in r.events}) == len(r.events)


async def test_events_not_asked_for_are_not_sent(channel: str) -> None:
    env = hook_env("", WEBHOOK_EVENTS="vacated")
    async with receiver() as r:
        env["WEBHOOK_URL"] = r.url
        async with run_gateway(make_settings(**env)) as g:
            async with ws_client(g.ws_url + "?user_id=a") as a:
                await join(a, channel)
            await r.wait_for(channel, 1)
            assert r.of(channel) == [("channel_vacated", None)]


async def test_a_receiver_down_gets_the_events_when_it_is_back(channel: str) -> None:
    async with receiver() as r, run_gateway(make_settings(**hook_env(r.url))) as g:
        before = await scrape(g)
        r.status = 503
        async with ws_client(g.ws_url + "?user_id=a") as a:
            await join(a, channel)
            await wait_until_async(lambda: r.posts >= 3, timeout=10, message="retries")
            assert r.of(channel) == []
            r.status = 200
            await r.wait_for(channel, 2)
        await r.wait_for(channel, 4)
        assert r.of(channel) == [
            ("channel_occupied", None),
            ("member_added", "a"),
            ("member_removed", "a"),
            ("channel_vacated", None),
        ]
        hooks = g.node.webhooks
        assert isinstance(hooks, MemoryWebhooks)
        assert hooks.poster.failures >= 2 and hooks.dropped == 0
        # /metrics counts the same (the registry is the process's: compare with before).
        after = await scrape(g)

        def moved(name: str, **labels: str) -> float:
            return value(after, name, **labels) - value(before, name, **labels)

        assert moved("realtime_webhook_events_total", outcome="delivered") == 4
        assert moved("realtime_webhook_failures_total") == hooks.poster.failures
        assert moved("realtime_webhook_events_total", outcome="dropped") == 0


async def test_a_full_queue_drops_the_oldest_and_counts_them(channel: str) -> None:
    env = hook_env("", WEBHOOK_QUEUE_SIZE="3", WEBHOOK_EVENTS="member_added")
    async with receiver() as r:
        env["WEBHOOK_URL"] = r.url
        async with run_gateway(make_settings(**env)) as g:
            hooks = g.node.webhooks
            assert isinstance(hooks, MemoryWebhooks)
            before = await scrape(g)
            r.status = 503
            async with ws_client(g.ws_url + "?user_id=u0") as first:
                await join(first, channel)
                # u0's batch is being retried (out of the queue); then 6 more joins.
                await wait_until_async(lambda: r.posts >= 1, message="first POST")
                for i in range(1, 7):
                    async with ws_client(g.ws_url + f"?user_id=u{i}") as c:
                        await join(c, channel)
                await wait_until_async(lambda: hooks.dropped == 3, message="3 dropped")
                assert hooks.queued == 3
                r.status = 200
                await r.wait_for(channel, 4)
            assert r.of(channel) == [("member_added", f"u{i}") for i in (0, 4, 5, 6)]
            after = await scrape(g)
            dropped = ("realtime_webhook_events_total", frozenset({("outcome", "dropped")}))
            assert after.get(dropped, 0) - before.get(dropped, 0) == 3
