"""realtime.client end to end across two gateway processes on one real Redis, with a seed
gateway's messages (no ``seq``) mixed in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from realtime.client import Broadcast, Client, Member, PresenceJoin, PresenceSync
from realtime.testing.gateway import spawn_gateway
from realtime.testing.services import RedisServer
from realtime.testing.waiting import wait_until_async

from .test_client import next_of

pytestmark = pytest.mark.integration


async def test_clients_on_two_instances_and_a_seed_gateway(
    redis: RedisServer, tmp_path: Path, channel: str
) -> None:
    env = {"BROADCAST_MQ_TYPE": "redis", "PRESENCE_STORE": "redis", "REDIS_URL": redis.url}
    seed = aioredis.Redis.from_url(redis.url)
    try:
        async with (
            spawn_gateway(env, str(tmp_path / "g1.log")) as g1,
            spawn_gateway(env, str(tmp_path / "g2.log")) as g2,
            Client(g1.url, user_id="alice") as alice,
            Client(g2.url, user_id="bob") as bob,
        ):
            a = await alice.subscribe(channel)
            b = await bob.subscribe(channel)
            await a.track({"name": "Alice"})
            assert (await next_of(b, PresenceJoin)).user_id == "alice"
            await b.track({"name": "Bob"})
            await wait_until_async(lambda: set(a.members) == set(b.members) == {"alice", "bob"})
            await b.publish("chat", "from bob")
            message = await next_of(a, Broadcast)
            assert (message.user_id, message.payload) == ("bob", "from bob")
            # What the Go seed's encoder writes: no seq; applied as it comes.
            await seed.publish(
                f"presence.{channel}",
                json.dumps(
                    {
                        "type": "presence_join",
                        "channel_id": channel,
                        "user_id": "go",
                        "meta": {"user_id": "go", "meta": {"k": 1}, "updated_at": 5},
                        "ts": 1700000000001,
                    }
                ),
            )
            for sub in (a, b):
                joined = await next_of(sub, PresenceJoin)
                while joined.user_id != "go":  # bob's own join may still be queued before it
                    joined = await next_of(sub, PresenceJoin)
                assert (joined.user_id, joined.seq) == ("go", 0)
                assert sub.members["go"] == Member(user_id="go", meta={"k": 1}, updated_at=5)
            await a.untrack()
            await wait_until_async(lambda: set(b.members) == {"bob", "go"})
            # A client subscribing now gets the members from its sync: the stored ones (the
            # seed's event above was only published, not written to the presence hash).
            async with Client(g2.url, user_id="carol") as carol:
                c = await carol.subscribe(channel, listen=("presence",))
                sync = await next_of(c, PresenceSync)
                assert {m.user_id for m in sync.users} == set(c.members) == {"bob"}
    finally:
        await seed.aclose()
