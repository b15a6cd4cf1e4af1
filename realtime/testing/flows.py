"""End-to-end flows every deployment must carry between two gateway instances.

Each backend's tests (Redis, Kafka, RabbitMQ, a third party's) start two gateways on their MQ
and run these, so "every message of PROTOCOL.md flows both ways" means the same everywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any, Protocol

import httpx
import pytest
import redis.asyncio as aioredis
from websockets.exceptions import ConnectionClosed

from realtime.testing.gateway import ws_client
from realtime.testing.services import RedisServer, RestartUnsupported
from realtime.testing.waiting import wait_until_async


class Instance(Protocol):
    @property
    def url(self) -> str: ...

    @property
    def ws_url(self) -> str: ...


async def check_broadcasts_cross(a: Instance, b: Instance, channel: str) -> None:
    """A client broadcast from each side and an HTTP event into ``b`` reach clients on both."""
    async with (
        ws_client(a.ws_url + "?user_id=one") as c1,
        ws_client(b.ws_url + "?user_id=two") as c2,
    ):
        await c1.subscribe(channel, "broadcast")
        await c2.subscribe(channel, "broadcast")
        await c1.send({"type": "broadcast", "channel": channel, "event": "e1", "payload": {"n": 1}})
        for client in (c1, c2):
            await client.expect(
                "broadcast", channel=channel, event="e1", user_id="one", payload={"n": 1}
            )
        await c2.send({"type": "broadcast", "channel": channel, "event": "e2", "payload": [2]})
        for client in (c1, c2):
            await client.expect(
                "broadcast", channel=channel, event="e2", user_id="two", payload=[2]
            )
        async with httpx.AsyncClient(timeout=30) as http:
            response = await http.post(
                b.url + "/api/event", json={"channel": channel, "event": "h", "payload": "x"}
            )
            assert response.status_code == 200, response.text
        for client in (c1, c2):
            frame = await client.expect("broadcast", channel=channel, event="h", payload="x")
            assert "user_id" not in frame


async def check_presence_crosses(a: Instance, b: Instance, channel: str) -> None:
    """Join, update, sync, leave and close on ``b`` are seen by a watcher on ``a``."""
    async with ws_client(a.ws_url + "?user_id=watcher") as watcher:
        sync = await watcher.subscribe(channel)
        assert sync is not None and sync["users"] == []
        async with ws_client(b.ws_url + "?user_id=bob") as bob:
            await bob.request(
                {"type": "presence_join", "channel": channel, "payload": {"n": "Bob"}}
            )
            await watcher.expect("presence_join", user_id="bob", meta={"n": "Bob"})
            await bob.send(
                {"type": "presence_update", "channel": channel, "payload": {"s": "away"}}
            )
            await watcher.expect("presence_update", user_id="bob", meta={"s": "away"})
            async with ws_client(a.ws_url + "?user_id=late") as late:
                sync = await late.subscribe(channel, "presence")
                assert sync is not None
                assert [(u["user_id"], u["meta"]) for u in sync["users"]] == [
                    ("bob", {"s": "away"})
                ]
            await bob.send({"type": "presence_leave", "channel": channel})
            await watcher.expect("presence_leave", user_id="bob")
            await bob.request({"type": "presence_join", "channel": channel, "payload": {}})
            await watcher.expect("presence_join", user_id="bob")
        # bob's connection closed: his gateway removes him and says so.
        await watcher.expect("presence_leave", user_id="bob")
        async with ws_client(b.ws_url + "?user_id=late") as late:
            sync = await late.subscribe(channel, "presence")
            assert sync is not None and sync["users"] == []


async def check_recovery(
    a: Instance,
    b: Instance,
    channel: str,
    count: int = 80,
    kill_b: Callable[[], None] | None = None,
) -> None:
    """History and recovery across instances (``channel`` must be a history channel, whose
    history holds at least ``count`` broadcasts): a client on ``b`` receiving a steady stream
    published on ``a`` is cut off mid-stream (its socket dropped, frames unread; or, with
    ``kill_b``, its gateway killed under it) and reconnects to ``a`` with ``since``: it ends
    with every broadcast exactly once, in order."""
    got: list[int] = []
    last: dict[str, Any] = {}

    def take(frame: dict[str, Any]) -> None:
        assert frame["type"] == "broadcast", frame
        got.append(frame["payload"])
        last.update(offset=frame["offset"], epoch=frame["epoch"])

    async with httpx.AsyncClient(timeout=30) as http:

        async def publish() -> None:
            offsets = []
            for n in range(count):
                response = await http.post(
                    a.url + "/api/event", json={"channel": channel, "event": "n", "payload": n}
                )
                assert response.status_code == 200, response.text
                offsets.append(response.json()["offset"])
            # Answered only once stored, each with its place.
            assert offsets == list(range(offsets[0], offsets[0] + count))

        async with ws_client(b.ws_url + "?user_id=reader") as client:
            await client.send(
                {"type": "subscribe", "channel": channel, "listen": ["broadcast"], "history": 0}
            )
            start = await client.expect("subscribed", channel=channel)
            last.update(offset=start["offset"], epoch=start["epoch"])
            publisher = asyncio.create_task(publish())
            try:
                while len(got) < count // 4:
                    take(await client.recv())
                if kill_b is not None:
                    kill_b()
                    # What the client had received before the gateway died is its; then
                    # the socket ends without a close frame.
                    with contextlib.suppress(ConnectionClosed):
                        while True:
                            take(await client.recv())
            except BaseException:
                publisher.cancel()
                raise
        # Cut off with frames unread; the stream goes on; back on the other instance.
        async with ws_client(a.ws_url + "?user_id=reader") as client:
            await client.send(
                {
                    "type": "subscribe",
                    "channel": channel,
                    "listen": ["broadcast"],
                    "since": dict(last),
                }
            )
            await client.expect("subscribed", channel=channel, recovered=True)
            while len(got) < count:
                take(await client.recv())
            await publisher
            # A WebSocket publish is acknowledged with its place too.
            await client.send(
                {"type": "broadcast", "channel": channel, "payload": count, "ref": "p"}
            )
            frames = [await client.recv(), await client.recv()]
            ack = next(f for f in frames if f["type"] == "ack")
            take(next(f for f in frames if f["type"] == "broadcast"))
            assert ack == {"type": "ack", "ref": "p", **last}
    assert got == list(range(count + 1))


async def check_concurrent_publishers(
    a: Instance, b: Instance, channel: str, count: int = 200, publishers: int = 8
) -> None:
    """Publishers on both instances at once (``channel`` a history channel): a live subscriber
    on each instance gets offsets 1..``count`` in order, none twice, none missing."""
    async with (
        ws_client(a.ws_url + "?user_id=a") as on_a,
        ws_client(b.ws_url + "?user_id=b") as on_b,
        httpx.AsyncClient(timeout=30) as http,
    ):
        await on_a.subscribe(channel, "broadcast")
        await on_b.subscribe(channel, "broadcast")

        async def publish(k: int) -> None:
            # Half of the publishers on each instance, all at once.
            target = (a, b)[k % 2]
            for n in range(k, count, publishers):
                response = await http.post(
                    target.url + "/api/event", json={"channel": channel, "payload": n}
                )
                assert response.status_code == 200, response.text

        await asyncio.gather(*(publish(k) for k in range(publishers)))
        for client in (on_a, on_b):
            frames = [await client.recv() for _ in range(count)]
            assert [f["type"] for f in frames] == ["broadcast"] * count
            assert [f["offset"] for f in frames] == list(range(1, count + 1))
            assert sorted(f["payload"] for f in frames) == list(range(count))


async def _post(http: httpx.AsyncClient, gateway: Instance, channel: str, n: int) -> bool:
    try:
        response = await http.post(
            gateway.url + "/api/event", json={"channel": channel, "payload": n}
        )
    except httpx.HTTPError:
        return False
    return response.status_code == 200


async def check_history_across_redis_restart(
    g1: Instance, g2: Instance, own_redis: RedisServer, channel: str, persistence: bool
) -> None:
    """Two gateways whose presence Redis (where history lives) restarts, whatever MQ carries
    broadcasts: with persistence (a snapshot reloaded) a client recovers under the same epoch;
    without, the epoch changes and it is told ``recovered: false``. ``own_redis`` must be a
    server of this test's alone (it restarts); ``channel`` a history channel."""
    last: dict[str, Any] = {}
    async with httpx.AsyncClient(timeout=10) as http:
        async with ws_client(g2.ws_url + "?user_id=r") as client:
            await client.subscribe(channel, "broadcast")
            for n in range(5):
                assert await _post(http, g1, channel, n)
            for _ in range(2):
                frame = await client.expect("broadcast")
                last = {"offset": frame["offset"], "epoch": frame["epoch"]}
        admin = aioredis.Redis.from_url(own_redis.url)
        if persistence:
            await admin.save()  # the snapshot a persistent Redis reloads at start
        await admin.aclose()
        try:
            own_redis.restart()
        except RestartUnsupported as exc:
            pytest.skip(str(exc))
        published = [5]

        async def published_after_restart() -> bool:
            if await _post(http, g1, channel, published[0]):
                published[0] += 1
                return True
            return False

        await wait_until_async(published_after_restart, timeout=30, interval=0.2)
        async with ws_client(g1.ws_url + "?user_id=r") as client:
            await client.send(
                {"type": "subscribe", "channel": channel, "listen": ["broadcast"], "since": last}
            )
            subscribed = await client.expect("subscribed", channel=channel)
            if persistence:
                assert subscribed["recovered"] is True
                assert subscribed["epoch"] == last["epoch"] and subscribed["offset"] == 6
                frames = [await client.expect("broadcast") for _ in range(4)]
                assert [f["payload"] for f in frames] == [2, 3, 4, 5]
                assert [f["offset"] for f in frames] == [3, 4, 5, 6]
            else:
                assert subscribed["recovered"] is False
                assert subscribed["epoch"] != last["epoch"] and subscribed["offset"] == 1
            assert await _post(http, g1, channel, 99)
            frame = await client.expect("broadcast", payload=99)
            assert (frame["offset"], frame["epoch"]) == (
                subscribed["offset"] + 1,
                subscribed["epoch"],
            )
