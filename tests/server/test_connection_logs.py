"""A real gateway's log lines for each WebSocket opened and closed, the client address they
carry (TRUSTED_PROXIES decides whether X-Forwarded-For is believed), the HTTP access log, and
the maximum connection age."""

from __future__ import annotations

import asyncio
import logging
import re
import time

import httpx
import jwt
import pytest
from websockets.asyncio.client import connect

from realtime.testing.gateway import make_settings, run_gateway
from realtime.testing.waiting import wait_until_async

SECRET = "s" * 32
FORWARDED = {"X-Forwarded-For": "203.0.113.9"}


def lines(caplog: pytest.LogCaptureFixture, start: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(start)]


@pytest.fixture
def logged(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="realtime.connections")
    caplog.set_level(logging.INFO, logger="uvicorn.access")
    return caplog


async def test_open_and_close_lines_name_client_user_instance_code_and_duration(
    logged: pytest.LogCaptureFixture,
) -> None:
    token = jwt.encode({"sub": "alice", "exp": int(time.time()) + 60}, SECRET)
    async with run_gateway(make_settings(JWT_SECRET=SECRET)) as gateway:
        async with connect(f"{gateway.ws_url}?token={token}") as ws:
            port = ws.local_address[1]
            await wait_until_async(lambda: lines(logged, "ws open"), 5, message="open line")
            await asyncio.sleep(0.3)  # a duration to see
            await ws.close(4321, "bye")
        await wait_until_async(lambda: lines(logged, "ws closed"), 5, message="close line")
    [opened] = lines(logged, "ws open")
    [closed] = lines(logged, "ws closed")
    assert re.fullmatch(
        rf"ws open 127\.0\.0\.1:{port} user='alice' instance=[0-9a-f]{{12}} conn=1", opened
    ), opened
    match = re.fullmatch(
        rf"ws closed 127\.0\.0\.1:{port} user='alice' instance=[0-9a-f]{{12}} conn=1"
        r" code=4321 after (\d+\.\d)s",
        closed,
    )
    assert match, closed
    assert 0.3 <= float(match.group(1)) < 3
    assert opened.split()[3] == closed.split()[3]  # the same instance
    assert token not in logged.text
    assert not any(token in str(r.args) for r in logged.records)


async def test_server_close_code_is_logged(logged: pytest.LogCaptureFixture) -> None:
    async with run_gateway(make_settings(WS_MAX_FRAME_BYTES="256")) as gateway:
        async with connect(f"{gateway.ws_url}?user_id=bob") as ws:
            await ws.send("x" * 1000)
            await ws.wait_closed()
        await wait_until_async(lambda: lines(logged, "ws closed"), 5, message="close line")
    assert " code=1009 " in lines(logged, "ws closed")[0]


async def test_forwarded_for_believed_from_a_trusted_proxy(
    logged: pytest.LogCaptureFixture,
) -> None:
    # The default trusts loopback, where this client connects from.
    async with run_gateway(make_settings(HTTP_ACCESS_LOG="1"), log_level="info") as gateway:
        async with connect(f"{gateway.ws_url}?user_id=bob", additional_headers=FORWARDED):
            await wait_until_async(lambda: lines(logged, "ws open"), 5, message="open line")
        async with httpx.AsyncClient() as http:
            await http.get(gateway.url + "/healthz", headers=FORWARDED)
        await wait_until_async(lambda: "/healthz" in logged.text, 5, message="access line")
    assert lines(logged, "ws open")[0].startswith("ws open 203.0.113.9:0 user='bob'")
    [access] = [r.getMessage() for r in logged.records if "/healthz" in r.getMessage()]
    assert access.startswith("203.0.113.9:0 - "), access


@pytest.mark.parametrize("trusted", ["10.0.0.0/8,::1", "none"])
async def test_forwarded_for_ignored_from_an_untrusted_peer(
    logged: pytest.LogCaptureFixture, trusted: str
) -> None:
    settings = make_settings(HTTP_ACCESS_LOG="1", TRUSTED_PROXIES=trusted)
    async with run_gateway(settings, log_level="info") as gateway:
        async with connect(f"{gateway.ws_url}?user_id=bob", additional_headers=FORWARDED):
            await wait_until_async(lambda: lines(logged, "ws open"), 5, message="open line")
        async with httpx.AsyncClient() as http:
            await http.get(gateway.url + "/healthz", headers=FORWARDED)
        await wait_until_async(lambda: "/healthz" in logged.text, 5, message="access line")
    assert lines(logged, "ws open")[0].startswith("ws open 127.0.0.1:")
    assert "203.0.113.9" not in logged.text


async def test_access_log_is_off_by_default(logged: pytest.LogCaptureFixture) -> None:
    async with run_gateway(make_settings(), log_level="info") as gateway:
        async with httpx.AsyncClient() as http:
            assert (await http.get(gateway.url + "/healthz")).status_code == 200
            # The open line of a WebSocket opened after it shows the log is being captured.
            async with connect(f"{gateway.ws_url}?user_id=bob"):
                await wait_until_async(lambda: lines(logged, "ws open"), 5, message="open line")
    assert "/healthz" not in logged.text


async def test_max_connection_age_closes_with_1012_jittered() -> None:
    age = 1.0
    async with run_gateway(make_settings(WS_MAX_CONNECTION_AGE_SECONDS=str(age))) as gateway:
        opened = time.monotonic()
        sockets = [await connect(f"{gateway.ws_url}?user_id=u{i}") for i in range(12)]

        async def closed_at(ws: object) -> tuple[float, int | None]:
            await ws.wait_closed()  # type: ignore[attr-defined]
            return time.monotonic() - opened, ws.close_code  # type: ignore[attr-defined]

        closes = await asyncio.wait_for(asyncio.gather(*map(closed_at, sockets)), 5)
    assert {code for _, code in closes} == {1012}
    times = sorted(t for t, _ in closes)
    assert age * 0.85 < times[0] and times[-1] < age * 1.1 + 0.5, times
    # +-10%: twelve connections opened together do not all close in the same instant.
    assert times[-1] - times[0] > 0.02, times
