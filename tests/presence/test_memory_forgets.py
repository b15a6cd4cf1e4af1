"""The memory store does not grow with the channels ever joined, yet keeps versions monotonic
for the subscribers still listening to an emptied channel."""

from __future__ import annotations

import json

import pytest

from realtime.presence import memory
from realtime.presence.base import ChannelState
from realtime.presence.memory import MemoryPresence
from realtime.testing.gateway import make_settings, run_gateway, ws_client
from realtime.testing.waiting import wait_until_async
from realtime.wire.messages import Member
from tests.presence.views import watching


async def events_of(store: MemoryPresence) -> list[dict[str, object]]:
    events: list[dict[str, object]] = []

    async def publish(channel: str, data: bytes) -> None:
        events.append(json.loads(data))

    await store.start(publish)
    return events


async def test_emptied_channels_are_forgotten() -> None:
    store = MemoryPresence(60, forget_after=0.05)
    await events_of(store)
    for i in range(1000):
        await store.join(f"c{i}", "conn", Member("u"))
    await store.join("busy", "conn", Member("u"))
    for i in range(1000):
        await store.leave(f"c{i}", "conn", "u")
    await wait_until_async(lambda: len(store) == 1, timeout=2)
    assert (await store.reap(["c7"]))["c7"] == ChannelState(0, "")  # as Redis reads absent
    await store.close()


async def test_an_emptied_channel_a_reap_names_keeps_its_version_and_epoch() -> None:
    store = MemoryPresence(60, forget_after=0.5)
    events = await events_of(store)
    for channel in ("watched", "unwatched"):
        await store.join(channel, "conn", Member("u"))
        await store.leave(channel, "conn", "u")
    kept = (await store.reap(["watched"]))["watched"]
    assert kept.version == 2

    async def unwatched_forgotten() -> bool:
        await store.reap(["watched"])  # the reaper's tick, for a channel someone listens to
        return len(store) == 1

    await wait_until_async(unwatched_forgotten, timeout=3, interval=0.02)
    await store.join("watched", "conn", Member("u"))
    assert (events[-1]["seq"], events[-1]["epoch"]) == (3, kept.epoch)
    # Forgotten, then joined again: a new epoch, so a subscriber of the old one resyncs.
    await store.join("unwatched", "conn", Member("u"))
    assert events[-1]["seq"] == 1 and events[-1]["epoch"] not in (
        "",
        kept.epoch,
        events[1]["epoch"],
    )
    await store.close()


async def test_a_gateway_forgets_channels_everyone_left_but_not_one_watched(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Reap ticks 0.25 s apart (a quarter of the TTL): four of them within FORGET_AFTER.
    monkeypatch.setattr(memory, "FORGET_AFTER", 1.0)
    settings = make_settings(
        PRESENCE_TTL_SECONDS="1", WS_MAX_PRESENCE_JOINS="0", WS_MAX_FRAMES_PER_SECOND="0"
    )
    async with run_gateway(settings) as gw:
        store = gw.node.store
        assert isinstance(store, MemoryPresence)
        url = gw.ws_url
        async with watching(url, "room") as watcher:
            await watcher.subscribe()
            async with ws_client(url + "?user_id=alice") as alice:
                for i in range(100):
                    await alice.request({"type": "presence_join", "channel": f"c{i}"})
                await alice.request({"type": "presence_join", "channel": "room"})
                assert len(store) == 101
            # alice's connection closed: she left every channel.
            await wait_until_async(lambda: watcher.users() == set())
            await wait_until_async(lambda: len(store) == 1, timeout=4)  # only "room" kept
            async with ws_client(url + "?user_id=bob") as bob:
                await bob.request({"type": "presence_join", "channel": "room"})
                await wait_until_async(lambda: watcher.users() == {"bob"})
        # The watcher followed one count throughout: no gap, no second sync.
        assert watcher.view.errors == []
        assert watcher.view.syncs == 1
        assert watcher.view.version == 3
