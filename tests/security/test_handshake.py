"""The bytes before a request: slow headers, oversized request lines and headers, answered
and closed by a real gateway; the start-up warnings of seed-compatible openings."""

from __future__ import annotations

import asyncio
import time

import pytest

from realtime.testing.gateway import Gateway, make_settings, run_gateway

UPGRADE = (
    b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
)


async def exchange(gw: Gateway, request: bytes, timeout: float = 5.0) -> tuple[bytes, bool]:
    """Send ``request``, read until the gateway closes; (what came back, closed in time)."""
    host, port = gw.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        try:
            data = await asyncio.wait_for(reader.read(), timeout)  # read() ends at EOF
        except TimeoutError:
            return b"", False
        return data, True
    finally:
        writer.close()


@pytest.mark.parametrize("path", [b"/healthz", b"/ws"])
async def test_a_long_request_line_is_414_and_closed(path: bytes) -> None:
    async with run_gateway(make_settings()) as gw:
        request = b"GET " + path + b"?token=" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n"
        data, closed = await exchange(gw, request + UPGRADE + b"\r\n")
        assert closed and data.startswith(b"HTTP/1.1 414 ")


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(b"X-Big: " + b"a" * 9000 + b"\r\n", id="one-line-over-8190"),
        pytest.param(b"".join(b"X-%d: %s\r\n" % (n, b"a" * 7000) for n in range(3)), id="total"),
        pytest.param(b"".join(b"X-%d: a\r\n" % n for n in range(150)), id="count"),
    ],
)
@pytest.mark.parametrize("path", [b"/healthz", b"/ws?user_id=a"])
async def test_oversized_headers_are_431_and_closed(headers: bytes, path: bytes) -> None:
    async with run_gateway(make_settings()) as gw:
        request = b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n" + UPGRADE + headers + b"\r\n"
        data, closed = await exchange(gw, request)
        assert closed and data.startswith(b"HTTP/1.1 431 ")


async def test_headers_within_the_limits_are_served() -> None:
    async with run_gateway(make_settings()) as gw:
        request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 8000 + b"\r\n"
        data, _ = await exchange(gw, request + b"Connection: close\r\n\r\n")
        assert data.startswith(b"HTTP/1.1 200 ")


async def test_a_slow_handshake_is_cut_at_the_deadline() -> None:
    async with run_gateway(make_settings(HANDSHAKE_TIMEOUT_SECONDS="0.5")) as gw:
        started = time.monotonic()
        data, closed = await exchange(gw, b"GET /ws?user_id=a HTTP/1.1\r\nHost: x\r\n", 5.0)
        assert closed and data.startswith(b"HTTP/1.1 408 ")
        assert time.monotonic() - started < 4
        # An idle socket that never sends a byte is cut too.
        data, closed = await exchange(gw, b"", 5.0)
        assert closed
