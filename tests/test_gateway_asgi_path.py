"""The gateway under a plain ASGI WebSocket protocol (any ASGI server): the writer-task path."""

from __future__ import annotations

import pytest
from websockets.exceptions import ConnectionClosed

from realtime.testing.gateway import make_settings, run_gateway, ws_client
from realtime.testing.servers import wait_until_async

PLAIN = {"ws": "websockets-sansio"}


async def test_broadcast_presence_and_errors() -> None:
    async with run_gateway(make_settings(), **PLAIN) as gw:
        async with ws_client(gw.ws_url + "?user_id=a") as a:
            async with ws_client(gw.ws_url + "?user_id=b") as b:
                await a.subscribe("room")
                await b.request({"type": "presence_join", "channel": "room", "payload": {"x": 1}})
                await a.expect("presence_join", user_id="b", meta={"x": 1})
                await b.send({"type": "broadcast", "channel": "room", "event": "e", "payload": [1]})
                await a.expect("broadcast", user_id="b", payload=[1])
                await b.send("{oops")
                await b.expect("error", code="invalid_json")
            # b closed: its presence goes with it.
            await a.expect("presence_leave", user_id="b")


async def test_slow_consumer_is_closed_with_4008() -> None:
    settings = make_settings(WS_SEND_QUEUE_SIZE="8", WS_MAX_FRAME_BYTES="200000")
    async with run_gateway(settings, **PLAIN) as gw:
        async with (
            ws_client(gw.ws_url + "?user_id=slow", max_queue=1) as slow,
            ws_client(gw.ws_url + "?user_id=pub") as pub,
        ):
            await slow.subscribe("firehose", "broadcast")
            frame = {
                "type": "broadcast",
                "channel": "firehose",
                "event": "e",
                "payload": "x" * 100_000,
            }
            for _ in range(400):
                await pub.send(frame)
                if gw.node.connections == 1:
                    break
            await wait_until_async(lambda: gw.node.connections == 1, timeout=20)
            with pytest.raises(ConnectionClosed) as info:
                while True:
                    await slow.recv()
            assert info.value.rcvd is not None and info.value.rcvd.code == 4008
