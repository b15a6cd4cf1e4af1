"""``POST /api/event`` over one kept-alive connection with HTTP/1.1 pipelining: every request
is answered, in order, and every broadcast reaches the subscribers, in order, on the memory
broker (whose deliveries are coalesced into shared write passes) and through Redis."""

from __future__ import annotations

import asyncio
import json
import re
from urllib.parse import urlparse

import pytest

from realtime.testing.gateway import Gateway, make_settings, run_gateway, ws_client
from realtime.testing.services import RedisServer

COUNT = 200
HEAD = re.compile(rb"HTTP/1\.1 (\d{3}) [^\r]*\r\n(.*?)\r\n\r\n", re.S)


def request(channel: str, i: int) -> bytes:
    body = json.dumps({"channel": channel, "event": "n", "payload": i}).encode()
    return (
        b"POST /api/event HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n%s" % (len(body), body)
    )


async def pipelined(gateway: Gateway, requests: list[bytes]) -> list[tuple[int, bytes]]:
    """Write every request at once on one connection; the answers, as (status, body)."""
    url = urlparse(gateway.url)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    try:
        writer.write(b"".join(requests))
        answers: list[tuple[int, bytes]] = []
        buf = b""
        while len(answers) < len(requests):
            chunk = await asyncio.wait_for(reader.read(1 << 16), 10)
            assert chunk, f"connection closed after {len(answers)} answers"
            buf += chunk
            while (match := HEAD.match(buf)) is not None:
                length = int(re.search(rb"(?i)content-length: *(\d+)", match.group(2)).group(1))  # type: ignore[union-attr]
                end = match.end() + length
                if len(buf) < end:
                    break
                answers.append((int(match.group(1)), buf[match.end() : end]))
                buf = buf[end:]
        return answers
    finally:
        writer.close()


async def check_pipelined_stream(gateway: Gateway, channel: str) -> None:
    async with (
        ws_client(gateway.ws_url + "?user_id=a") as a,
        ws_client(gateway.ws_url + "?user_id=b") as b,
    ):
        await a.subscribe(channel, "broadcast")
        await b.subscribe(channel, "broadcast")
        answers = await pipelined(gateway, [request(channel, i) for i in range(COUNT)])
        assert [status for status, _ in answers] == [200] * COUNT
        ids = [json.loads(body)["message_id"] for _, body in answers]
        assert len(set(ids)) == COUNT
        for client in (a, b):
            got = [(await client.expect("broadcast", channel=channel))["payload"] for _ in ids]
            assert got == list(range(COUNT))


async def test_a_pipelined_stream_is_answered_and_delivered_in_order(channel: str) -> None:
    async with run_gateway(make_settings()) as gateway:
        await check_pipelined_stream(gateway, channel)


@pytest.mark.integration
async def test_a_pipelined_stream_through_redis_is_answered_and_delivered_in_order(
    redis: RedisServer, channel: str
) -> None:
    settings = make_settings(BROADCAST_MQ_TYPE="redis", REDIS_URL=redis.url)
    async with run_gateway(settings) as gateway:
        await check_pipelined_stream(gateway, channel)
