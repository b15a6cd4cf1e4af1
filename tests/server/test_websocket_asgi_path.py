"""The gateway under a plain ASGI WebSocket protocol (any ASGI server): the writer-task path.
Its slow-consumer case runs in test_gateway.py, parametrised over both paths."""

from __future__ import annotations

from realtime.testing.gateway import make_settings, run_gateway, ws_client

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
