"""The presence leave grace end to end: real gateway processes on a real Redis, and the
embedded gateway. Observers' views are built only from the frames they received."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from realtime.presence import memory
from realtime.presence.memory import MemoryPresence
from realtime.testing.gateway import Client, make_settings, run_gateway, ws_client
from realtime.testing.services import RedisServer
from realtime.testing.waiting import wait_until_async
from tests.presence.test_gateways import converged, fresh_sync, gateways, join
from tests.presence.views import Watcher, watching

pytestmark = pytest.mark.integration

GRACE = 2.0
# The leave comes after the grace plus the reaper's period (1 s at the default TTL) plus
# delivery; the test allows a little more for a busy 2-core machine.
LEAVE_BOUND = GRACE + 2.5


def drop(client: Client) -> None:
    """Cut the socket as a lost network does: no close frame."""
    client.ws.transport.abort()


def kinds(w: Watcher) -> list[tuple[str, Any]]:
    return [(f["type"], f.get("user_id")) for f in w.view.frames]


@contextlib.asynccontextmanager
async def markers(url: str, channel: str, w: Watcher) -> AsyncIterator[Any]:
    """``mark(name)``: a user joins and the watcher sees it, so every frame sent before has
    arrived: what the watcher holds then is all there was. Markers stay until the end."""
    async with contextlib.AsyncExitStack() as stack:

        async def mark(name: str) -> None:
            client = await stack.enter_async_context(ws_client(f"{url}?user_id={name}"))
            await join(client, channel)
            await wait_until_async(lambda: name in w.users(), message=f"marker {name}")

        yield mark


async def closed_at(client: Any) -> float:
    """When ``client``'s connection closed (the clock read as it did)."""
    await client.ws.wait_closed()
    return time.monotonic()


async def left(w: Watcher, user: str, since: float) -> float:
    """Wait for ``user``'s leave; how long after ``since`` it came."""
    await wait_until_async(lambda: user not in w.users(), timeout=LEAVE_BOUND + 5, interval=0.02)
    return time.monotonic() - since


async def test_a_user_who_moves_within_the_grace_is_no_leave_and_no_join(
    redis: RedisServer, tmp_path: Path, channel: str
) -> None:
    grace = {"PRESENCE_LEAVE_GRACE_SECONDS": str(GRACE)}
    async with gateways(redis, tmp_path, 2, **grace) as (g1, g2):
        async with watching(g2.ws_url, channel) as w, markers(g2.ws_url, channel, w) as mark:
            await w.subscribe()
            async with ws_client(g1.ws_url + "?user_id=u") as u:
                await join(u, channel, n=1)
                await converged([w], {"u"})
                drop(u)
            # Back on the other instance with the same meta: nothing to tell anyone.
            async with ws_client(g2.ws_url + "?user_id=u") as u:
                await join(u, channel, n=1)
                await mark("m1")
                assert kinds(w)[1:] == [("presence_join", "u"), ("presence_join", "m1")]
                # Back again, to the first instance, with a new meta: one update.
                drop(u)
            async with ws_client(g1.ws_url + "?user_id=u") as u:
                await join(u, channel, n=2)
                await wait_until_async(lambda: w.view.members.get("u") == {"n": 2})
                # Still here well after the graces of the dropped sockets ended.
                gone = time.monotonic() + GRACE + 1.5
                await wait_until_async(lambda: time.monotonic() > gone, timeout=GRACE + 3)
                await mark("m2")
                # During a grace the user is listed: present until the leave.
                dropped = time.monotonic()
                drop(u)
                assert set(await fresh_sync(g2.ws_url, channel)) == {"u", "m1", "m2"}
            took = await left(w, "u", dropped)
            assert GRACE - 0.05 <= took <= LEAVE_BOUND, f"leave after {took:.2f}s"
            await mark("m3")  # a second leave would have come before it
            assert kinds(w)[1:] == [
                ("presence_join", "u"),
                ("presence_join", "m1"),
                ("presence_update", "u"),
                ("presence_join", "m2"),
                ("presence_leave", "u"),
                ("presence_join", "m3"),
            ]
            assert w.view.errors == []
            # A deliberate leave is immediate, grace or not.
            async with ws_client(g1.ws_url + "?user_id=v") as v:
                await join(v, channel)
                await wait_until_async(lambda: "v" in w.users())
                asked = time.monotonic()
                await v.request({"type": "presence_leave", "channel": channel})
                assert await left(w, "v", asked) < GRACE / 2


async def test_the_leave_comes_when_the_instance_that_held_the_user_stopped(
    redis: RedisServer, tmp_path: Path, channel: str
) -> None:
    grace = {"PRESENCE_LEAVE_GRACE_SECONDS": str(GRACE)}
    async with gateways(redis, tmp_path, 2, **grace) as (g1, g2):
        async with (
            watching(g2.ws_url, channel) as w,
            markers(g2.ws_url, channel, w) as mark,
            ws_client(g1.ws_url + "?user_id=gone") as gone,
            ws_client(g1.ws_url + "?user_id=mover") as mover,
        ):
            await w.subscribe()
            await join(gone, channel)
            await join(mover, channel, at="g1")
            await converged([w], {"gone", "mover"})
            # A deploy: g1 stops and closes its connections (1012); one user comes back
            # through the other instance, the other does not.
            # The drain closes g1's connections spread over SHUTDOWN_DRAIN_SECONDS: the grace
            # of each runs from its own close.
            gone_closed = asyncio.create_task(closed_at(gone))
            g1.process.send_signal(signal.SIGTERM)
            await mover.ws.wait_closed()
            assert mover.ws.close_code == 1012
            async with ws_client(g2.ws_url + "?user_id=mover") as back:
                await join(back, channel, at="g1")  # the client's own meta, unchanged
                took = await left(w, "gone", await gone_closed)
                assert g1.process.wait(10) in (0, -signal.SIGTERM)  # uvicorn re-raises it
                assert GRACE - 0.05 <= took <= LEAVE_BOUND, f"leave after {took:.2f}s"
                await mark("m")
                assert kinds(w)[1:] == [
                    ("presence_join", "gone"),
                    ("presence_join", "mover"),
                    ("presence_leave", "gone"),
                    ("presence_join", "m"),
                ]
                assert w.view.errors == []


async def test_the_instance_that_held_a_lingering_user_reaps_it_unwatched(
    redis: RedisServer, tmp_path: Path, channel: str
) -> None:
    # Nobody watches the channel and nobody else is in it: the instance where the connection
    # closed still ends the grace, so the member does not outstay it in Redis.
    raw = aioredis.Redis.from_url(redis.url)
    grace = {"PRESENCE_LEAVE_GRACE_SECONDS": str(GRACE)}
    try:
        async with gateways(redis, tmp_path, 1, **grace) as (g,):
            async with ws_client(g.ws_url + "?user_id=u") as u:
                await join(u, channel)
                dropped = time.monotonic()
                drop(u)

            async def gone() -> bool:
                return not await raw.hexists(f"presence:{channel}", "u")

            await wait_until_async(gone, timeout=LEAVE_BOUND + 5, interval=0.05)
            took = time.monotonic() - dropped
            assert GRACE - 0.05 <= took <= LEAVE_BOUND, f"gone after {took:.2f}s"
    finally:
        await raw.aclose()


async def test_embedded_a_return_within_the_grace_is_no_event() -> None:
    settings = make_settings(PRESENCE_LEAVE_GRACE_SECONDS=str(GRACE))
    async with run_gateway(settings) as gw:
        url = gw.ws_url
        async with watching(url, "room") as w, markers(url, "room", w) as mark:
            await w.subscribe()
            async with ws_client(url + "?user_id=u") as u:
                await join(u, "room", n=1)
                await wait_until_async(lambda: "u" in w.users())
                drop(u)
            async with ws_client(url + "?user_id=u") as u:
                await join(u, "room", n=1)
                await mark("m1")
                await u.request({"type": "presence_join", "channel": "room", "payload": {"n": 2}})
                await wait_until_async(lambda: w.view.members.get("u") == {"n": 2})
                dropped = time.monotonic()
                await u.ws.close()  # a clean close gets the grace too
            took = await left(w, "u", dropped)
            assert GRACE - 0.05 <= took <= LEAVE_BOUND, f"leave after {took:.2f}s"
            await mark("m2")
            assert kinds(w)[1:] == [
                ("presence_join", "u"),
                ("presence_join", "m1"),
                ("presence_update", "u"),
                ("presence_leave", "u"),
                ("presence_join", "m2"),
            ]
            assert w.view.errors == []


async def test_embedded_an_unwatched_lingering_user_is_reaped() -> None:
    settings = make_settings(PRESENCE_LEAVE_GRACE_SECONDS=str(GRACE))
    async with run_gateway(settings) as gw:
        store = gw.node.store
        assert isinstance(store, MemoryPresence)
        async with ws_client(gw.ws_url + "?user_id=u") as u:
            await join(u, "room")
            drop(u)
        # Reaped at the end of the grace, then forgotten as any emptied channel: nothing is
        # left of a user who never came back, though nobody watched the channel.
        bound = LEAVE_BOUND + memory.FORGET_AFTER + 2
        await wait_until_async(lambda: len(store) == 0, timeout=bound, interval=0.05)
