"""Clients that never read, and big broadcasts: what the gateway holds for them and for how long.

    .venv/bin/python bench/slow_readers.py [--clients 20] [--posts 3] [--mb 10] [--watch 50]

Starts a gateway process (embedded mode; the write path is the same on every broker) with a
5 s ping interval and timeout and a message size limit raised for the posts, opens
``--clients`` WebSocket connections that subscribe to one channel and then never read a byte
(bare sockets: nothing reads for them), posts ``--posts`` broadcasts of ``--mb`` MB to that
channel over HTTP, then samples once a second for ``--watch`` seconds: the gateway's RSS, its
connections still established and the bytes in their kernel send queues (``ss``), and its log
lines about slow consumers. Extra gateway settings go as ``--env NAME=VALUE``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from realtime.testing.gateway import spawn_gateway


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    assert match is not None
    return int(match.group(1)) / 1024


def established(port: int) -> tuple[int, int]:
    """(connections established on the gateway's side, bytes in their send queues)."""
    out = subprocess.run(
        ["ss", "-tnH", "state", "established", f"( sport = :{port} )"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    conns = send_q = 0
    for line in out.splitlines():
        fields = line.split()
        conns += 1
        send_q += int(fields[1])
    return conns, send_q


def masked(payload: bytes) -> bytes:
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    assert len(payload) < 126
    return bytes([0x81, 0x80 | len(payload)]) + mask + body


def never_reader(host: str, port: int, channel: str) -> socket.socket:
    sock = socket.create_connection((host, port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /ws?user_id=mute HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    response = b""
    while b"\r\n\r\n" not in response:
        response += sock.recv(1)
    assert response.startswith(b"HTTP/1.1 101"), response
    frame = {"type": "subscribe", "channel": channel, "listen": ["broadcast"]}
    sock.sendall(masked(json.dumps(frame).encode()))
    return sock


async def one_round(url: str, host: str, port: int, args: argparse.Namespace) -> None:
    """Never readers and big posts, until the gateway has dropped them all."""
    socks = [never_reader(host, port, "firehose") for _ in range(args.clients)]
    await asyncio.sleep(1)
    body = {"channel": "firehose", "event": "big", "payload": "x" * int(args.mb * 1_000_000)}
    async with httpx.AsyncClient(timeout=60) as http:
        for _ in range(args.posts):
            await http.post(url + "/api/event", json=body)
    for _ in range(60):
        if established(port)[0] == 0:
            break
        await asyncio.sleep(1)
    for sock in socks:
        sock.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--posts", type=int, default=3)
    parser.add_argument("--mb", type=float, default=10)
    parser.add_argument("--watch", type=int, default=50)
    parser.add_argument("--env", action="append", default=[])
    parser.add_argument("--rounds", type=int, default=1, help="repeat, to tell a leak from reuse")
    args = parser.parse_args()
    env = {
        "BROADCAST_MQ_TYPE": "memory",
        "PRESENCE_STORE": "memory",
        "WS_PING_INTERVAL_SECONDS": "5",
        "WS_PING_TIMEOUT_SECONDS": "5",
        # Room for the posts where bodies are capped (builds without the cap ignore it).
        "BROADCAST_MAX_MESSAGE_BYTES": str(max(1 << 20, int(args.mb * 1_000_000) + (1 << 20))),
        **dict(item.split("=", 1) for item in args.env),
    }
    with tempfile.TemporaryDirectory() as tmp:
        log_path = str(Path(tmp) / "gateway.log")
        async with spawn_gateway(env, log_path) as gw:
            pid = gw.process.pid
            host, port = gw.url.removeprefix("http://").split(":")
            base = rss_mb(pid)
            for round_ in range(1, args.rounds):
                await one_round(gw.url, host, int(port), args)
                print(f"after round {round_}: RSS {rss_mb(pid):.1f} MB")
            socks = [never_reader(host, int(port), "firehose") for _ in range(args.clients)]
            await asyncio.sleep(1)  # the subscribes are acted on (their acks go unread)
            idle = rss_mb(pid)
            payload = "x" * int(args.mb * 1_000_000)
            body = {"channel": "firehose", "event": "big", "payload": payload}
            peak = idle

            async def sample() -> None:
                nonlocal peak
                while True:
                    peak = max(peak, rss_mb(pid))
                    await asyncio.sleep(0.05)

            sampler = asyncio.create_task(sample())
            async with httpx.AsyncClient(timeout=60) as http:
                for _ in range(args.posts):
                    response = await http.post(gw.url + "/api/event", json=body)
                    print(f"POST {len(payload) / 1e6:.0f} MB -> {response.status_code}")
            sampler.cancel()
            start = time.monotonic()
            print(f"RSS at start {base:.1f} MB, with {args.clients} idle clients {idle:.1f} MB")
            print("  t(s)  RSS(MB)  +RSS  established  send-q(MB)  slow-consumer log lines")
            gone_at = None
            for second in range(args.watch + 1):
                rss = rss_mb(pid)
                peak = max(peak, rss)
                conns, send_q = established(int(port))
                slow = len(re.findall(r"clos(?:ed|ing) slow consumer", gw.log()))
                if second % 5 == 0 or (conns == 0 and gone_at is None):
                    print(
                        f"{second:6d} {rss:8.1f} {rss - idle:+6.1f} {conns:12d}"
                        f" {send_q / 1e6:11.1f} {slow:6d}"
                    )
                if conns == 0 and gone_at is None:
                    gone_at = time.monotonic() - start
                await asyncio.sleep(max(0.0, start + second + 1 - time.monotonic()))
            print(f"peak RSS {peak:.1f} MB (+{peak - idle:.1f} over idle; sampled every 50 ms)")
            print(
                "all connections gone after "
                + (f"{gone_at:.1f} s" if gone_at is not None else f"more than {args.watch} s")
            )
            for sock in socks:
                sock.close()


if __name__ == "__main__":
    asyncio.run(main())
