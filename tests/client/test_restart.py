"""The Python client survives its gateway being killed and restarted on a real Redis: it
reconnects, resubscribes, rejoins presence with the same meta, and on a history channel
receives what was published meanwhile exactly once (issue #13's "done when")."""

from __future__ import annotations

from pathlib import Path

import pytest

from realtime.client import (
    Backoff,
    Broadcast,
    Client,
    ConnectionState,
    Publisher,
    Subscribed,
)
from realtime.client.messages import Message
from realtime.testing.gateway import spawn_gateway
from realtime.testing.services import RedisServer
from realtime.testing.waiting import free_port, wait_until_async

from .test_client import next_of

pytestmark = pytest.mark.integration


async def test_restart_loses_no_message_on_a_history_channel(
    redis: RedisServer, tmp_path: Path, channel: str
) -> None:
    env = {
        "BROADCAST_MQ_TYPE": "redis",
        "PRESENCE_STORE": "redis",
        "REDIS_URL": redis.url,
        "HISTORY_CHANNELS": "hist-*",
        # A killed instance's members are announced gone after about this (+1 s): the test
        # waits for it, so the presence seen after the restart is the client's rejoin.
        "PRESENCE_TTL_SECONDS": "1",
    }
    hist = f"hist-{channel}"
    port = free_port()
    states: list[ConnectionState] = []
    async with (
        spawn_gateway(env, str(tmp_path / "other.log")) as other,
        Publisher(other.url) as publisher,
        Client(other.url, user_id="watcher") as watcher,
    ):
        watch = await watcher.subscribe(hist, listen=("presence",))
        client = Client(
            f"http://127.0.0.1:{port}",
            user_id="alice",
            backoff=Backoff(base=0.05, cap=0.5),
            on_state=states.append,
        )
        try:
            async with spawn_gateway(env, str(tmp_path / "first.log"), port=port) as first:
                await client.connect()
                sub = await client.subscribe(hist)
                await sub.track({"name": "Alice"})
                await publisher.publish(hist, "m", 1)
                assert (await next_of(sub, Broadcast)).payload == 1
                await wait_until_async(lambda: "alice" in watch.members, timeout=10)
                first.process.kill()
                first.process.wait()
            await wait_until_async(lambda: client.state is ConnectionState.RECONNECTING)
            await wait_until_async(lambda: "alice" not in watch.members, timeout=15)
            # Published while the client has no connection: it must get these after it.
            await publisher.publish(hist, "m", 2)
            await publisher.publish(hist, "m", 3)
            async with spawn_gateway(env, str(tmp_path / "second.log"), port=port):
                await wait_until_async(lambda: client.connected, timeout=20)
                await publisher.publish(hist, "m", 4)
                received: list[Message] = []
                while not (
                    isinstance(m := await next_of(sub, object), Broadcast) and m.payload == 4
                ):
                    received.append(m)
                payloads = [m.payload for m in received if isinstance(m, Broadcast)]
                assert payloads == [2, 3], received
                recovered = [m for m in received if isinstance(m, Subscribed)]
                assert [m.recovered for m in recovered] == [True]
                # Presence came back with the same meta, through the client's rejoin.
                await wait_until_async(lambda: "alice" in watch.members, timeout=10)
                assert watch.members["alice"].meta == {"name": "Alice"}
                assert "alice" in sub.members
        finally:
            await client.close()
    assert states[:3] == [
        ConnectionState.CONNECTING,
        ConnectionState.CONNECTED,
        ConnectionState.RECONNECTING,
    ]
    assert states[-2:] == [ConnectionState.CONNECTED, ConnectionState.CLOSED]
