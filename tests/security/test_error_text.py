"""Errors sent to clients name no internal host, port or exception text: a real gateway on a
real Redis that is then stopped."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from realtime.testing.gateway import make_settings, run_gateway, ws_client
from realtime.testing.services import RedisServer, RestartUnsupported, redis_server

pytestmark = pytest.mark.integration


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A Redis of this test's own: it is stopped mid-test."""
    with redis_server() as server:
        yield server


async def test_backend_failures_reach_clients_without_addresses_or_library_text(
    own_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    host, port = own_redis.address
    settings = make_settings(
        BROADCAST_MQ_TYPE="redis", PRESENCE_STORE="redis", REDIS_URL=own_redis.url
    )
    async with run_gateway(settings) as gw, ws_client(gw.ws_url + "?user_id=a") as a:
        await a.subscribe("room", "broadcast")
        try:
            own_redis.stop()
        except RestartUnsupported:
            pytest.skip("REDIS_URL names a Redis this test may not stop")
        frames = []
        for ref, frame in enumerate(
            [
                {"type": "presence_join", "channel": "room", "payload": {}},
                {"type": "broadcast", "channel": "room", "payload": 1},
            ],
            1,
        ):
            await a.send({**frame, "ref": ref})
            frames.append(await a.expect("error", ref=ref))
        async with httpx.AsyncClient() as http:
            response = await http.post(gw.url + "/api/event", json={"channel": "room"})
        assert response.status_code == 503
        said = json.dumps(frames) + response.text
        # (A subscribe is acked: the redis broker's subscriber reconnects by itself.)
        assert [f["code"] for f in frames] == ["presence_unavailable", "publish_failed"]
        for leak in (str(port), host, "Error", "Connection", "redis"):
            assert leak not in said, f"{leak!r} reached a client: {said}"
        assert str(port) in caplog.text  # the detail went to the log instead
