"""Real gateways and real WebSocket clients for tests, ours and plugin authors' alike."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
from websockets.asyncio.client import ClientConnection, connect

from realtime.cli import server_options
from realtime.config import Settings, load_settings
from realtime.engine.node import Node
from realtime.server.app import create_app
from realtime.testing.waiting import free_port, wait_until_async

TIMEOUT = 10.0


def bound_socket() -> socket.socket:
    """A listening socket on a free 127.0.0.1 port, handed to uvicorn (no port race)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def make_settings(**env: str) -> Settings:
    """Settings from ``env`` alone (no process environment, no .env): embedded by default."""
    base = {"BROADCAST_MQ_TYPE": "memory", "PRESENCE_STORE": "memory", "LOG_LEVEL": "warning"}
    return load_settings({**base, **env}, env_file=None)


@dataclass
class Gateway:
    url: str
    node: Node

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://", 1) + "/ws"


@contextlib.asynccontextmanager
async def run_gateway(settings: Settings, **uvicorn_options: Any) -> AsyncIterator[Gateway]:
    """An in-process gateway on a free port, served by uvicorn as ``realtime serve`` does
    (``uvicorn_options`` override, e.g. ``ws="websockets-sansio"`` for the plain ASGI path)."""
    app = create_app(settings)
    sock = bound_socket()
    port = sock.getsockname()[1]
    options = {**server_options(settings), "log_level": "warning", **uvicorn_options}
    config = uvicorn.Config(app, **options)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))

    def started() -> bool:
        if task.done():
            raise RuntimeError("gateway did not start")
        return bool(server.started)

    try:
        try:
            await wait_until_async(started, TIMEOUT, interval=0.01, message="gateway started")
        except TimeoutError as exc:
            raise RuntimeError("gateway did not start") from exc
        yield Gateway(f"http://127.0.0.1:{port}", app.state.node)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, TIMEOUT)
        sock.close()


@dataclass
class GatewayProcess:
    """``python -m realtime`` in a subprocess: the real CLI, killable for crash tests."""

    process: subprocess.Popen[bytes]
    url: str
    log_path: str

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://", 1) + "/ws"

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()


@contextlib.asynccontextmanager
async def spawn_gateway(
    env: Mapping[str, str],
    log_path: str,
    python: str = sys.executable,
    args: Sequence[str] = (),
    port: int | None = None,
) -> AsyncIterator[GatewayProcess]:
    """A gateway process on ``port`` (a free one by default; give the same one again to
    restart an instance where a load balancer expects it), once its /readyz answers 200."""
    port = port or free_port()
    full_env = {
        **os.environ,
        "LOG_LEVEL": "info",
        **env,
        "SERVER_ADDR": f"127.0.0.1:{port}",
    }
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [python, "-m", "realtime", "serve", *args],
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=os.path.dirname(log_path),
        )
    gateway = GatewayProcess(process, f"http://127.0.0.1:{port}", log_path)
    try:
        async with httpx.AsyncClient() as http:

            async def ready() -> bool:
                if process.poll() is not None:
                    raise RuntimeError(f"gateway exited early:\n{gateway.log()}")
                return (await http.get(gateway.url + "/readyz")).status_code == 200

            try:
                # Annotated: without the context mypy cannot pick T out of `Awaitable[T] | T`.
                ok: bool = await wait_until_async(
                    ready, 20, ignore=(httpx.HTTPError,), message="/readyz 200"
                )
                assert ok
            except TimeoutError as exc:
                raise RuntimeError(f"gateway not ready:\n{gateway.log()}") from exc
        yield gateway
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


class Client:
    """A WebSocket client that decodes frames and waits for them with deadlines."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self._refs = 0

    async def send(self, frame: Mapping[str, Any] | str | bytes) -> None:
        await self.ws.send(frame if isinstance(frame, str | bytes) else json.dumps(frame))

    async def recv(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.ws.recv(), timeout)
        frame: dict[str, Any] = json.loads(raw)
        return frame

    async def expect(self, type_: str, timeout: float = TIMEOUT, **fields: Any) -> dict[str, Any]:
        """The next frame, which must be of ``type_`` with ``fields``; anything else fails."""
        frame = await self.recv(timeout)
        assert frame.get("type") == type_, f"expected {type_}, got {frame}"
        for key, value in fields.items():
            assert frame.get(key) == value, f"expected {key}={value!r} in {frame}"
        return frame

    async def request(self, frame: Mapping[str, Any]) -> None:
        """Send ``frame`` with a ``ref`` and wait for its ack (frames before it must not come)."""
        self._refs += 1
        await self.send({**frame, "ref": self._refs})
        await self.expect("ack", ref=self._refs)

    async def subscribe(self, channel: str, *listen: str) -> dict[str, Any] | None:
        """Subscribe and wait until it is live; with presence, returns the presence_sync."""
        kinds = list(listen or ("broadcast", "presence"))
        self._refs += 1
        await self.send(
            {"type": "subscribe", "channel": channel, "listen": kinds, "ref": self._refs}
        )
        sync = None
        if "presence" in kinds:
            sync = await self.expect("presence_sync", channel=channel)
        await self.expect("ack", ref=self._refs)
        return sync


@contextlib.asynccontextmanager
async def ws_client(url: str, **kwargs: Any) -> AsyncIterator[Client]:
    async with connect(url, open_timeout=TIMEOUT, **kwargs) as ws:
        yield Client(ws)
