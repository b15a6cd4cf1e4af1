"""Embedded mode (memory store and broker): the same presence semantics in one process."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest

from realtime.testing.gateway import Gateway, make_settings, run_gateway, ws_client
from realtime.testing.waiting import wait_until_async
from tests.presence.views import watching


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    settings = make_settings(
        PRESENCE_DIFF_WINDOW_MS="50", PRESENCE_MAX_MEMBERS="30", PRESENCE_MAX_META_BYTES="100"
    )
    async with run_gateway(settings) as gw:
        yield gw


async def test_versions_diffs_chunks_and_caps(gateway: Gateway) -> None:
    url = gateway.ws_url
    async with watching(url, "room", "seed") as seed, watching(url, "room", "diff") as diff:
        await seed.subscribe()
        await diff.subscribe(presence_diff=True)
        async with ws_client(url + "?user_id=u") as tab1, ws_client(url + "?user_id=u") as tab2:
            for tab in (tab1, tab2):
                await tab.request({"type": "presence_join", "channel": "room", "payload": {}})
            await tab1.request({"type": "presence_leave", "channel": "room"})
            await tab2.send(
                {"type": "presence_join", "channel": "room", "payload": {"x": "y" * 99}}
            )
            await tab2.expect("error", code="meta_too_large", channel="room")
            clients = contextlib.AsyncExitStack()
            for i in range(29):
                client = await clients.enter_async_context(ws_client(f"{url}?user_id=m{i}"))
                await client.request({"type": "presence_join", "channel": "room"})
            async with ws_client(url + "?user_id=over") as over:
                await over.send({"type": "presence_join", "channel": "room", "ref": "x"})
                await over.expect("error", code="presence_full", ref="x")
            truth = {"u"} | {f"m{i}" for i in range(29)}
            await wait_until_async(lambda: seed.users() == diff.users() == truth)
            kinds = [f["type"] for f in seed.view.frames]
            assert kinds[:3] == ["presence_sync", "presence_join", "presence_update"]
            assert kinds.count("presence_leave") == 0  # tab1 left, u stays through tab2
            diffs = [f for f in diff.view.frames if f["type"] == "presence_diff"]
            assert 1 <= len(diffs) < 29
            assert seed.view.errors == diff.view.errors == []
            async with watching(url, "room", "chunked") as chunked:
                await chunked.subscribe(presence_chunk=8)
                syncs = [f for f in chunked.view.frames if f["type"] == "presence_sync"]
                assert [f["chunk"] for f in syncs] == [1, 2, 3, 4]
                assert chunked.users() == truth
            await clients.aclose()
        await wait_until_async(lambda: seed.users() == diff.users() == set())
        # join, update, 29 joins, 29 leaves, u's leave; tab1's leave was no event
        assert seed.view.version == diff.view.version == 2 + 29 + 29 + 1
