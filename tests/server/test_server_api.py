"""The server API across two real gateways on one real Redis: every answer is the cluster's."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from realtime.testing.gateway import Gateway, make_settings, run_gateway, ws_client
from realtime.testing.services import RedisServer
from realtime.testing.waiting import wait_until_async

pytestmark = pytest.mark.integration

KEY = "k" * 32  # may act anywhere
ROOMS_KEY = "r" * 32  # only on room-*
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
async def pair(redis: RedisServer) -> AsyncIterator[tuple[Gateway, Gateway]]:
    settings = make_settings(
        BROADCAST_MQ_TYPE="redis",
        PRESENCE_STORE="redis",
        REDIS_URL=redis.url,
        API_KEYS=f"{KEY},{ROOMS_KEY}:room-*",
        HISTORY_CHANNELS="hist-*",
    )
    async with run_gateway(settings) as g1, run_gateway(settings) as g2:
        # Each knows of the other (the newcomer's hello is answered at once).
        def acquainted() -> bool:
            return all(len(g.node.control.known()) == 2 for g in (g1, g2))

        await wait_until_async(acquainted, 10)
        yield g1, g2


async def api(gateway: Gateway, method: str, path: str, **kwargs: object) -> httpx.Response:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=10) as http:
        kwargs.setdefault("headers", AUTH)
        return await http.request(method, path, **kwargs)  # type: ignore[arg-type]


async def test_channels_counts_every_instances_subscribers(pair, channel: str) -> None:  # type: ignore[no-untyped-def]
    g1, g2 = pair
    other = channel + "-b"
    async with contextlib.AsyncExitStack() as stack:
        a = await stack.enter_async_context(ws_client(g1.ws_url + "?user_id=a"))
        b = await stack.enter_async_context(ws_client(g2.ws_url + "?user_id=b"))
        c = await stack.enter_async_context(ws_client(g2.ws_url + "?user_id=c"))
        await a.subscribe(channel, "broadcast")
        await b.subscribe(channel)
        await c.subscribe(channel, "broadcast")
        await c.subscribe(other, "presence")
        answer = await api(g1, "GET", "/api/channels", params={"pattern": channel + "*"})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["channels"] == [
            {"channel": channel, "subscribers": 3},
            {"channel": other, "subscribers": 1},
        ]
        assert body["instances"] == 2 and body["complete"] is True
        assert body["next"] is None
        # One at a time: the cursor walks the same list.
        first = (await api(g2, "GET", "/api/channels?limit=1&pattern=" + channel + "*")).json()
        assert first["channels"] == [{"channel": channel, "subscribers": 3}]
        assert first["next"] == channel
        second = await api(
            g2,
            "GET",
            "/api/channels",
            params={"limit": "1", "pattern": channel + "*", "cursor": first["next"]},
        )
        assert second.json()["channels"] == [{"channel": other, "subscribers": 1}]


async def test_channels_lists_only_what_the_key_allows(pair, channel: str) -> None:  # type: ignore[no-untyped-def]
    g1, g2 = pair
    hidden = "x" + channel
    async with ws_client(g1.ws_url + "?user_id=a") as a, ws_client(g2.ws_url + "?user_id=b") as b:
        await a.subscribe(channel, "broadcast")
        await b.subscribe(hidden, "broadcast")
        rooms = {"X-API-Key": ROOMS_KEY}
        answer = await api(g1, "GET", "/api/channels", headers=rooms)
        names = [c["channel"] for c in answer.json()["channels"]]
        assert channel in names and hidden not in names
        everything = await api(g1, "GET", "/api/channels")
        assert hidden in [c["channel"] for c in everything.json()["channels"]]


async def test_presence_and_stats_are_the_clusters(pair, channel: str) -> None:  # type: ignore[no-untyped-def]
    g1, g2 = pair
    async with ws_client(g1.ws_url + "?user_id=a") as a, ws_client(g2.ws_url + "?user_id=b") as b:
        await a.request({"type": "presence_join", "channel": channel, "payload": {"n": 1}})
        await b.request({"type": "presence_join", "channel": channel, "payload": {"n": 2}})
        answer = await api(g1, "GET", "/api/presence", params={"channel": channel})
        assert answer.status_code == 200, answer.text
        members = {m["user_id"]: m["meta"] for m in answer.json()["members"]}
        assert members == {"a": {"n": 1}, "b": {"n": 2}}
        stats = await api(g2, "GET", "/api/presence/stats", params={"channel": channel})
        assert stats.json()["users"] == 2


async def test_disconnect_closes_the_user_everywhere_with_the_code(pair, channel: str) -> None:  # type: ignore[no-untyped-def]
    g1, g2 = pair
    async with contextlib.AsyncExitStack() as stack:
        u1 = await stack.enter_async_context(ws_client(g1.ws_url + "?user_id=u"))
        u2 = await stack.enter_async_context(ws_client(g2.ws_url + "?user_id=u"))
        v = await stack.enter_async_context(ws_client(g2.ws_url + "?user_id=v"))
        answer = await api(
            g1, "POST", "/api/disconnect", json={"user": "u", "code": 4321, "reason": "banned"}
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["connections"] == 2
        for client in (u1, u2):
            with pytest.raises(ConnectionClosed) as closed:
                await client.recv()
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4321
        await v.subscribe(channel, "broadcast")  # the other user is untouched


async def test_unsubscribe_stops_the_user_everywhere(pair, channel: str) -> None:  # type: ignore[no-untyped-def]
    g1, g2 = pair
    after = channel + "-after"
    async with contextlib.AsyncExitStack() as stack:
        u1 = await stack.enter_async_context(ws_client(g1.ws_url + "?user_id=u"))
        u2 = await stack.enter_async_context(ws_client(g2.ws_url + "?user_id=u"))
        v = await stack.enter_async_context(ws_client(g2.ws_url + "?user_id=v"))
        for client in (u1, u2, v):
            await client.subscribe(channel, "broadcast")
            await client.subscribe(after, "broadcast")
        answer = await api(g2, "POST", "/api/unsubscribe", json={"user": "u", "channel": channel})
        assert answer.status_code == 200, answer.text
        assert answer.json()["connections"] == 2
        for client in (u1, u2):
            await client.expect("error", code="unsubscribed", channel=channel)
        events = [{"channel": channel, "payload": 1}, {"channel": after, "payload": 2}]
        batch = await api(g1, "POST", "/api/batch", json={"events": events})
        assert batch.status_code == 200, batch.text
        # u gets the second channel's broadcast and not the first's; v gets both.
        for client in (u1, u2):
            await client.expect("broadcast", channel=after)
        await v.expect("broadcast", channel=channel)
        await v.expect("broadcast", channel=after)


async def test_batch_answers_history_offsets(pair, channel: str) -> None:  # type: ignore[no-untyped-def]
    g1, g2 = pair
    hist = "hist-" + channel
    async with ws_client(g2.ws_url + "?user_id=a") as a:
        await a.subscribe(channel, "broadcast")
        events = [
            {"channel": hist, "event": "e", "payload": {"i": 1}},
            {"channel": channel, "event": "e", "payload": {"i": 2}},
            {"channel": hist, "event": "e", "payload": {"i": 3}},
        ]
        answer = await api(g1, "POST", "/api/batch", json={"events": events})
        assert answer.status_code == 200, answer.text
        results = answer.json()["results"]
        assert [r["status"] for r in results] == ["ok"] * 3
        assert [r.get("offset") for r in results] == [1, None, 2]
        frame = await a.expect("broadcast", channel=channel)
        assert frame["payload"] == {"i": 2}


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/api/disconnect", {"user": ""}, 400),
        ("POST", "/api/disconnect", {"user": "u", "code": 1000}, 400),
        ("POST", "/api/disconnect", {"usr": "u"}, 400),
        ("POST", "/api/unsubscribe", {"user": "u"}, 400),
        ("POST", "/api/unsubscribe", {"user": "u", "channel": "__realtime__.x"}, 400),
        ("POST", "/api/batch", {"events": []}, 400),
        ("POST", "/api/batch", {"events": [{"channel": "a"}, {"payload": 1}]}, 400),
        ("POST", "/api/batch", "not json", 400),
        ("GET", "/api/presence", None, 400),
        ("GET", "/api/channels?limit=0", None, 400),
    ],
)
async def test_bad_requests_get_a_json_error(pair, method, path, body, status) -> None:  # type: ignore[no-untyped-def]
    g1, _ = pair
    kwargs: dict[str, object] = {}
    if isinstance(body, str):
        kwargs["content"] = body
        kwargs["headers"] = {**AUTH, "content-type": "application/json"}
    elif body is not None:
        kwargs["json"] = body
    answer = await api(g1, method, path, **kwargs)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]


async def test_keys_are_checked(pair, channel: str) -> None:  # type: ignore[no-untyped-def]
    g1, _ = pair
    rooms = {"X-API-Key": ROOMS_KEY}
    assert (await api(g1, "GET", "/api/channels", headers={})).status_code == 401
    bad = await api(g1, "POST", "/api/disconnect", headers={"X-API-Key": "z" * 32}, json={})
    assert bad.status_code == 401
    # A key limited to channels may not disconnect (it reaches every channel of the user).
    refused = await api(g1, "POST", "/api/disconnect", headers=rooms, json={"user": "u"})
    assert refused.status_code == 403
    outside = await api(
        g1, "POST", "/api/unsubscribe", headers=rooms, json={"user": "u", "channel": "news"}
    )
    assert outside.status_code == 403
    assert (
        await api(g1, "GET", "/api/presence", headers=rooms, params={"channel": "news"})
    ).status_code == 403
    batch = await api(
        g1,
        "POST",
        "/api/batch",
        headers=rooms,
        json={"events": [{"channel": "room-1"}, {"channel": "news"}]},
    )
    assert batch.status_code == 403 and "events[1]" in batch.json()["error"]
    inside = await api(
        g1, "GET", "/api/presence/stats", headers=rooms, params={"channel": "room-1"}
    )
    assert inside.status_code == 200
    wrong_type = await api(
        g1,
        "POST",
        "/api/unsubscribe",
        content=b"{}",
        headers={**AUTH, "content-type": "text/plain"},
    )
    assert wrong_type.status_code == 415


async def test_the_server_api_is_off_without_api_keys() -> None:
    async with run_gateway(make_settings()) as gateway:
        for method, path in (("GET", "/api/channels"), ("POST", "/api/disconnect")):
            answer = await api(gateway, method, path, json={"user": "u"})
            assert answer.status_code == 403 and "API_KEYS" in answer.json()["error"]
