"""Broadcasts on a broker that pipelines publishes (Redis): a client's stream is not held up by
round trips, yet order, acks and errors stay exact."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from realtime.testing.gateway import make_settings, run_gateway, ws_client
from realtime.testing.services import RedisServer, redis_server

pytestmark = pytest.mark.integration


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


def redis_settings(redis: RedisServer) -> dict[str, str]:
    return {"BROADCAST_MQ_TYPE": "redis", "PRESENCE_STORE": "memory", "REDIS_URL": redis.url}


async def test_a_burst_arrives_in_order_with_every_ack(redis: RedisServer, channel: str) -> None:
    # A burst far over the frame rate on purpose: pipelining is tested here, not the quota.
    settings = make_settings(**redis_settings(redis), WS_MAX_FRAMES_PER_SECOND="0")
    async with run_gateway(settings) as gw:
        async with (
            ws_client(gw.ws_url + "?user_id=pub") as pub,
            ws_client(gw.ws_url + "?user_id=sub") as sub,
        ):
            await sub.subscribe(channel, "broadcast")
            count = 600  # more than one connection may have in flight
            for i in range(count):
                await pub.send(
                    {"type": "broadcast", "channel": channel, "event": "n", "payload": i, "ref": i}
                )
            received = [
                (await sub.expect("broadcast", channel=channel))["payload"] for _ in range(count)
            ]
            assert received == list(range(count))
            acks = [(await pub.expect("ack"))["ref"] for _ in range(count)]
            assert acks == list(range(count))


async def test_refused_publishes_get_error_frames_and_the_connection_lives(
    own_redis: RedisServer, channel: str
) -> None:
    async with run_gateway(make_settings(**redis_settings(own_redis))) as gw:
        async with ws_client(gw.ws_url + "?user_id=pub") as pub:
            await pub.request({"type": "broadcast", "channel": channel, "payload": 0})
            own_redis.stop()
            for ref in ("a", "b"):
                await pub.send({"type": "broadcast", "channel": channel, "payload": 1, "ref": ref})
            for ref in ("a", "b"):
                await pub.expect("error", code="publish_failed", channel=channel, ref=ref)
            # Frames that do not publish are still answered meanwhile.
            await pub.send("not json")
            await pub.expect("error", code="invalid_json")
