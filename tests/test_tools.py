"""``realtime check``, ``realtime publish`` and ``realtime listen`` as an operator runs them,
against a real Redis and a live gateway process."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import httpx
import pytest

from realtime.testing.gateway import spawn_gateway
from realtime.testing.services import RedisServer
from realtime.testing.waiting import free_port, wait_until_async

from .test_cli import run_cli

pytestmark = pytest.mark.integration

KEY = "operator-key-0123456789"
JWT = "j" * 40


def redis_env(redis: RedisServer) -> dict[str, str]:
    return {"BROADCAST_MQ_TYPE": "redis", "PRESENCE_STORE": "redis", "REDIS_URL": redis.url}


def test_check_masks_secrets_and_passes_on_a_live_redis(redis: RedisServer) -> None:
    result = run_cli("check", env={**redis_env(redis), "API_KEYS": KEY, "JWT_SECRET": JWT})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "API_KEYS=********" in result.stdout
    assert KEY not in result.stdout + result.stderr and JWT not in result.stdout + result.stderr
    assert "ok   broadcast broker (redis)" in result.stdout
    assert "ok   presence store (redis): ping" in result.stdout


def test_check_fails_when_redis_does_not_answer() -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    result = run_cli(
        "check",
        env={
            "BROADCAST_MQ_TYPE": "redis",
            "PRESENCE_STORE": "redis",
            "REDIS_URL": dead,
            "START_TIMEOUT_SECONDS": "1",
        },
    )
    assert result.returncode == 1, result.stdout
    assert "FAIL" in result.stdout


def test_check_exits_2_on_a_bad_setting() -> None:
    result = run_cli("check", env={"SERVER_API_TIMEOUT_SECONDS": "-1"})
    assert result.returncode == 2
    assert "SERVER_API_TIMEOUT_SECONDS" in result.stderr


async def test_listen_prints_what_publish_sends(redis: RedisServer, tmp_path: Path) -> None:
    env = {**redis_env(redis), "API_KEYS": KEY}
    async with spawn_gateway(env, str(tmp_path / "g.log")) as gateway:
        cli_env = {**os.environ, "REALTIME_URL": gateway.url}
        listener = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "realtime",
            "listen",
            "tools-room",
            "--user",
            "op",
            env=cli_env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            async with httpx.AsyncClient() as http:

                async def subscribed() -> bool:
                    answer = await http.get(
                        gateway.url + "/api/channels",
                        params={"pattern": "tools-room"},
                        headers={"X-API-Key": KEY},
                    )
                    return bool(answer.json()["channels"])

                await wait_until_async(subscribed, 15)
            refused = await asyncio.to_thread(
                run_cli, "publish", "tools-room", "1", env={"REALTIME_URL": gateway.url}
            )
            assert refused.returncode == 1 and "API key" in refused.stdout
            published = await asyncio.to_thread(
                run_cli,
                "publish",
                "tools-room",
                '{"x": 1}',
                "--event",
                "hello",
                env={"REALTIME_URL": gateway.url, "REALTIME_API_KEY": KEY},
            )
            assert published.returncode == 0, published.stdout + published.stderr
            assert listener.stdout is not None
            line = await asyncio.wait_for(listener.stdout.readline(), 10)
            frame = json.loads(line)
            assert frame["type"] == "broadcast" and frame["event"] == "hello"
            assert frame["payload"] == {"x": 1}
        finally:
            listener.terminate()
            await listener.wait()


def test_publish_refuses_a_payload_that_is_not_json() -> None:
    result = run_cli("publish", "c", "{nope", env={"REALTIME_URL": "http://127.0.0.1:9"})
    assert result.returncode == 2 and "not valid JSON" in result.stderr


async def test_listen_says_how_the_connection_ended(tmp_path: Path) -> None:
    """A refused upgrade and a gateway that drains: one line on stderr each, exit code 1."""
    env = {"BROADCAST_MQ_TYPE": "memory", "PRESENCE_STORE": "memory", "JWT_SECRET": JWT}
    async with spawn_gateway(env, str(tmp_path / "g.log")) as gateway:
        refused = await asyncio.to_thread(
            run_cli, "listen", "c", env={"REALTIME_URL": gateway.url, "REALTIME_TOKEN": "bad"}
        )
        assert refused.returncode == 1
        assert "server rejected WebSocket connection: HTTP 401" in refused.stderr
    async with spawn_gateway(
        {"BROADCAST_MQ_TYPE": "memory", "PRESENCE_STORE": "memory"}, str(tmp_path / "h.log")
    ) as gateway:
        listener = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "realtime",
            "listen",
            "room",
            "--user",
            "op",
            "--presence",
            env={**os.environ, "REALTIME_URL": gateway.url},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert listener.stdout is not None
        line = await asyncio.wait_for(listener.stdout.readline(), 15)
        assert json.loads(line) == {
            "type": "presence_sync",
            "channel": "room",
            "users": [],
            "version": 0,
        }
        gateway.process.terminate()  # drains: the connection is closed with 1012
        out, err = await asyncio.wait_for(listener.communicate(), 15)
        assert listener.returncode == 1
        assert out == b""
        assert "realtime listen: closed with 1012" in err.decode()
