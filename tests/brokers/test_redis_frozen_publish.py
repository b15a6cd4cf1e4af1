"""A steady stream of publishes to a frozen (SIGSTOPped) real Redis: each answer comes within
the publisher's deadline from when it was asked, instead of queueing behind timed-out batches."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from realtime.brokers.redis.classic import RedisBroker
from realtime.brokers.redis.common import PUBLISH_DEADLINE
from realtime.errors import BrokerError
from realtime.testing.contract import Inbox
from realtime.testing.services import native_redis, redis_client

pytestmark = pytest.mark.integration

# Event-loop lag and a loaded 2-core machine; the deadline itself is the bound.
ROOM = 0.5


async def test_each_publish_to_a_frozen_redis_answers_within_the_deadline(channel: str) -> None:
    with native_redis() as server:
        with redis_client(server.host, server.port) as client:
            pid = int(client.info("server")["process_id"])
        broker = RedisBroker(server.url)
        await broker.start(Inbox())
        loop = asyncio.get_running_loop()
        answers: list[tuple[float, bool]] = []

        async def publish(i: int) -> None:
            asked = loop.time()
            try:
                await broker.publish("broadcast", channel, b"%d" % i)
                ok = True
            except BrokerError:
                ok = False
            answers.append((loop.time() - asked, ok))

        os.kill(pid, signal.SIGSTOP)
        try:
            # 3 deadlines of a steady stream, every 50 ms, each its own caller (HTTP requests).
            tasks = []
            for i in range(int(3 * PUBLISH_DEADLINE / 0.05)):
                tasks.append(asyncio.create_task(publish(i)))
                await asyncio.sleep(0.05)
            await asyncio.wait_for(asyncio.gather(*tasks), 4 * PUBLISH_DEADLINE)
        finally:
            os.kill(pid, signal.SIGCONT)
            await broker.close()
    assert len(answers) == len(tasks)
    assert not any(ok for _, ok in answers), "a frozen Redis answered"
    slowest = max(took for took, _ in answers)
    assert slowest <= PUBLISH_DEADLINE + ROOM, slowest
