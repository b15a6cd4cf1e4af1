"""The load-balancer drill: Debian's nginx, configured by deploy/nginx/realtime.conf (the file
docs/deployment.md shows), in front of two gateway processes on one Redis.

Clients connect through nginx, subscribe and join presence; a backend posts to /api/event
through nginx every 50 ms. Instance 1 gets SIGTERM (and drains): its clients see 1012 (or
1001), reconnect through nginx and receive again, no post gets a 5xx and no reconnect a 503,
an observer's view of presence is exact again within a bound, the surviving instance logs each
moved client's own address (X-Forwarded-For). Instance 1 comes back on its port and takes the
new connections (least_conn). Run without and with PRESENCE_LEAVE_GRACE_SECONDS: with it,
observers see no leave/join for the users that moved. Each run is bounded (pytest-timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from realtime.testing.gateway import GatewayProcess, spawn_gateway, ws_client
from realtime.testing.services import RedisServer, nginx_server
from realtime.testing.services.processes import tail
from realtime.testing.waiting import free_port, wait_until_async

from .recipe import nginx_site

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

CLIENTS = 20
NEW_CLIENTS = 8
POST_EVERY = 0.05
# From SIGTERM to an observer's presence being exact again.
PRESENCE_BOUND = 5.0
CLIENT_ADDRESS = "127.0.0.2"


@dataclass
class Mover:
    """A client that keeps itself connected through the balancer, as an app's client does:
    on a close it reconnects, subscribes and joins presence again."""

    user: str
    closes: list[int | None] = field(default_factory=list)
    connects: int = 0
    # Upgrades the balancer answered with an HTTP error (a 502 while an instance stops).
    refused: list[int] = field(default_factory=list)
    # The highest posted sequence number received, per connection (index = connects - 1).
    received: list[int] = field(default_factory=list)

    @property
    def last_seq(self) -> int:
        return self.received[-1] if self.received else -1

    async def run(self, url: str, channel: str) -> None:
        while True:
            try:
                async with connect(
                    f"{url}?user_id={self.user}",
                    open_timeout=5,
                    # From another loopback address than nginx's own, so the gateway's log
                    # shows whether the client's address came through X-Forwarded-For.
                    local_addr=(CLIENT_ADDRESS, 0),
                ) as ws:
                    subscribe = {"type": "subscribe", "channel": channel, "ref": 1}
                    await ws.send(json.dumps({**subscribe, "listen": ["broadcast", "presence"]}))
                    join = {"type": "presence_join", "channel": channel, "ref": 2}
                    await ws.send(json.dumps({**join, "payload": {"name": self.user}}))
                    live = False
                    async for raw in ws:
                        frame = json.loads(raw)
                        if frame["type"] == "ack" and frame.get("ref") == 2:
                            # Counted only once joined: "connected" means "present" too.
                            self.connects += 1
                            self.received.append(-1)
                            live = True
                        elif frame["type"] == "broadcast" and live:
                            self.received[-1] = max(self.received[-1], frame["payload"]["seq"])
                        elif frame["type"] == "error":
                            raise AssertionError(f"{self.user}: {frame}")
            except ConnectionClosed as exc:
                self.closes.append(exc.rcvd.code if exc.rcvd else None)
            except InvalidStatus as exc:
                self.refused.append(exc.response.status_code)
            except (OSError, TimeoutError):
                # The balancer itself refused or timed out: try again, as a client would.
                self.closes.append(None)
            await asyncio.sleep(0.05)


@dataclass
class Publisher:
    """A backend posting a numbered event through the balancer every POST_EVERY seconds."""

    statuses: list[int] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    seq: int = 0

    async def run(self, url: str, channel: str) -> None:
        async with httpx.AsyncClient(timeout=5) as http:
            while True:
                self.seq += 1
                body = {"channel": channel, "event": "tick", "payload": {"seq": self.seq}}
                try:
                    answer = await http.post(url + "/api/event", json=body)
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                else:
                    self.statuses.append(answer.status_code)
                    if answer.status_code != 200:
                        self.failures.append(f"{answer.status_code} {answer.text}")
                await asyncio.sleep(POST_EVERY)


class Observer:
    """Presence of one channel as a client sees it, from its presence_sync and events."""

    def __init__(self) -> None:
        self.members: set[str] = set()
        self.leaves: list[str] = []
        self.joins: list[str] = []

    async def run(self, url: str, channel: str) -> None:
        async with ws_client(f"{url}?user_id=observer") as client:
            # Not client.subscribe(): presence events of the clients joining meanwhile may
            # come between the presence_sync and the ack; every frame is handled below.
            await client.send({"type": "subscribe", "channel": channel, "listen": ["presence"]})
            while True:
                frame = await client.recv(timeout=60)
                if frame["type"] == "presence_join":
                    self.members.add(frame["user_id"])
                    self.joins.append(frame["user_id"])
                elif frame["type"] == "presence_leave":
                    self.members.discard(frame["user_id"])
                    self.leaves.append(frame["user_id"])
                elif frame["type"] == "presence_sync":
                    self.members = {member["user_id"] for member in frame["users"]}


@contextlib.asynccontextmanager
async def background(*coroutines: Any) -> AsyncIterator[list[asyncio.Task[None]]]:
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        yield tasks
    finally:
        for task in tasks:
            task.cancel()
        # Awaited, so every client closes its socket before the servers go.
        await asyncio.gather(*tasks, return_exceptions=True)


def surfaced(tasks: list[asyncio.Task[None]]) -> None:
    """A background task that ended on its own failed: raise its error here."""
    for task in tasks:
        if task.done() and not task.cancelled():
            task.result()
            raise AssertionError(f"{task} ended")


async def connections(http: httpx.AsyncClient, gateway: GatewayProcess) -> int:
    count: int = (await http.get(gateway.url + "/healthz")).json()["connections"]
    return count


@pytest.mark.parametrize("grace", [0, 4], ids=["no-grace", "grace"])
async def test_sigterm_one_instance_behind_nginx(
    redis: RedisServer, tmp_path: Path, channel: str, grace: int
) -> None:
    ports = [free_port(), free_port()]
    env = {
        "BROADCAST_MQ_TYPE": "redis",
        "PRESENCE_STORE": "redis",
        "REDIS_URL": redis.url,
        "PRESENCE_LEAVE_GRACE_SECONDS": str(grace),
    }
    upstreams = [f"127.0.0.1:{p}" for p in ports]
    async with (
        httpx.AsyncClient(timeout=5) as http,
        spawn_gateway(env, str(tmp_path / "g1.log"), port=ports[0]) as g1,
        spawn_gateway(env, str(tmp_path / "g2.log"), port=ports[1]) as g2,
    ):
        with nginx_server(lambda port: nginx_site(port, upstreams)) as lb:
            ws_url = lb.url.replace("http://", "ws://") + "/ws"
            movers = [Mover(f"user-{i}") for i in range(CLIENTS)]
            publisher = Publisher()
            # The observer stays on instance 2, so it watches the users that move.
            observer = Observer()
            everyone = {m.user for m in movers}
            async with background(
                observer.run(g2.ws_url, channel),
                publisher.run(lb.url, channel),
            ) as tasks:
                clients = {m.user: asyncio.ensure_future(m.run(ws_url, channel)) for m in movers}
                tasks.extend(clients.values())

                def healthy() -> None:
                    # Raised inside the waits, so a 5xx fails the drill at once, named.
                    surfaced(tasks)
                    assert publisher.failures == [], (publisher.failures[:3], tail(lb.error_log))
                    assert [m.refused for m in movers if m.refused] == []

                def settled() -> bool:
                    healthy()
                    return all(m.connects == 1 and m.last_seq > 0 for m in movers)

                await wait_until_async(settled, 15, message="every client live through nginx")
                await wait_until_async(
                    lambda: observer.members == everyone, 5, message="observer sees everyone"
                )
                on_g1 = await connections(http, g1)
                on_g2 = await connections(http, g2) - 1  # less the observer
                assert on_g1 + on_g2 == CLIENTS
                # least_conn shares them out; round-robin would too, so only "both used".
                assert on_g1 > 0 and on_g2 > 0, (on_g1, on_g2)
                observer.joins.clear()

                # -- SIGTERM instance 1 --------------------------------------------------------
                stopped_at = time.monotonic()
                seq_at_stop = publisher.seq
                posts_at_stop = len(publisher.statuses)
                g1.process.send_signal(signal.SIGTERM)
                await asyncio.to_thread(g1.process.wait, 20)

                def moved() -> bool:
                    healthy()
                    return sum(m.connects == 2 for m in movers) == on_g1 and all(
                        m.last_seq > seq_at_stop for m in movers
                    )

                await wait_until_async(moved, 20, message="instance 1's clients back, receiving")
                moved_users = {m.user for m in movers if m.connects == 2}
                for m in movers:
                    if m.user in moved_users:
                        assert m.closes == [1012] or m.closes == [1001], (m.user, m.closes)
                    else:
                        assert m.closes == [], (m.user, m.closes)
                await wait_until_async(
                    lambda: observer.members == everyone,
                    max(0.1, stopped_at + PRESENCE_BOUND - time.monotonic()),
                    message=f"presence exact within {PRESENCE_BOUND}s of the SIGTERM",
                )
                assert await connections(http, g2) == CLIENTS + 1
                # nginx passed each client's address on; instance 2 trusts it from loopback
                # and logs it (the clients connect from another loopback address than nginx).
                opened = re.findall(
                    rf"ws open {re.escape(CLIENT_ADDRESS)}:\d+ user='([^']+)'", g2.log()
                )
                assert moved_users <= set(opened), g2.log()[-2000:]

                # -- instance 1 back: new clients go to it -------------------------------------
                async with spawn_gateway(env, str(tmp_path / "g1b.log"), port=ports[0]) as g1b:
                    async with contextlib.AsyncExitStack() as stack:
                        for i in range(NEW_CLIENTS):
                            url = f"{ws_url}?user_id=new-{i}"
                            await stack.enter_async_context(ws_client(url))

                        # least_conn: instance 1 holds none, instance 2 all the others, so
                        # every new connection goes to instance 1 (round-robin: about half).
                        async def all_new_on_g1() -> bool:
                            return await connections(http, g1b) == NEW_CLIENTS

                        await wait_until_async(
                            all_new_on_g1, 5, message="every new connection on instance 1"
                        )
                        assert await connections(http, g2) == CLIENTS + 1

                # -- presence of the users that moved, and of one that goes for good ----------
                if grace:
                    # A leave the grace failed to hold back would come when it ends: wait
                    # that long (a time, not a condition), then for a marker's join on
                    # instance 2, which the observer receives after anything published before.
                    await asyncio.sleep(max(0.0, stopped_at + grace + 1 - time.monotonic()))
                    async with ws_client(f"{g2.ws_url}?user_id=marker") as marker:
                        # No subscription: nothing else reaches the marker; no ack awaited.
                        await marker.send({"type": "presence_join", "channel": channel})
                        await wait_until_async(
                            lambda: "marker" in observer.joins, 5, message="the marker's join"
                        )
                    flicker = moved_users & set(observer.leaves + observer.joins)
                    assert flicker == set(), f"observers saw {sorted(flicker)} leave or join"
                gone = movers[0].user
                clients[gone].cancel()
                await wait_until_async(
                    lambda: gone in observer.leaves,
                    grace + PRESENCE_BOUND,
                    message=f"{gone}'s leave within the grace ({grace}s) and {PRESENCE_BOUND}s",
                )

                # Posts went on through the stop and the restart, and none failed; no
                # reconnect was refused either.
                healthy()
                assert len(publisher.statuses) > posts_at_stop + 10
