"""The real command line, as a user starts it."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import uvicorn

from realtime.config import OPTIONS
from realtime.testing.gateway import spawn_gateway


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "realtime", *args],
        env={
            **os.environ,
            "BROADCAST_MQ_TYPE": "memory",
            "PRESENCE_STORE": "memory",
            **(env or {}),
        },
        capture_output=True,
        text=True,
        timeout=30,
        cwd=cwd,
    )


@pytest.mark.parametrize(
    ("variable", "value", "accepts"),
    [
        ("PRESENCE_TTL_SECONDS", "abc", "whole number"),
        ("SERVER_ADDR", "nonsense", "host:port"),
        # The installed list depends on which plugins are installed; the miss itself does not.
        ("BROADCAST_MQ_TYPE", "nats", "no broker 'nats' installed (installed: "),
        ("PRESENCE_STORE", "etcd", "redis | memory"),
        ("JWT_SECRET", "a", "at least 32"),
        ("JWT_PUBLIC_KEY", "/nonexistent/key.pem", "neither a PEM public key"),
        ("CHANNEL_POLICY", "token", "needs JWT_SECRET"),
    ],
)
def test_bad_setting_stops_the_start_naming_the_variable(
    variable: str, value: str, accepts: str, tmp_path: Path
) -> None:
    result = run_cli("serve", env={variable: value}, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert variable in lines[0] and accepts in lines[0]


def test_env_file_in_working_directory_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("PRESENCE_TTL_SECONDS=soon\n")
    result = run_cli("serve", cwd=tmp_path)
    assert result.returncode == 2
    assert "PRESENCE_TTL_SECONDS" in result.stderr


def test_serve_help_documents_every_setting() -> None:
    result = run_cli("serve", "--help")
    assert result.returncode == 0
    for option in OPTIONS:
        assert option.name in result.stdout
    assert "--workers" in result.stdout


async def test_first_log_line_names_the_backends(tmp_path: Path) -> None:
    env = {"BROADCAST_MQ_TYPE": "memory", "PRESENCE_STORE": "memory"}
    async with spawn_gateway(env, str(tmp_path / "gw.log")) as gw:
        async with httpx.AsyncClient() as http:
            assert (await http.get(gw.url + "/healthz")).status_code == 200
        lines = gw.log().splitlines()
    assert "broker=memory presence=memory" in lines[0]
    assert "embedded" in lines[0]
    # Where it is safer than the seed, the start says so.
    assert any(
        "bodies over 1047552 bytes get 413 (HTTP_MAX_BODY_BYTES; the seed had no cap" in line
        for line in lines[1:5]
    )
    # The bound a seed deployment may need to raise, with its setting.
    assert any(
        "1024 frames (WS_SEND_QUEUE_SIZE) or 16777216 bytes (WS_SEND_QUEUE_BYTES)" in line
        for line in lines[1:6]
    )
    # Who may read /metrics, said at start.
    assert any("GET /metrics answers loopback clients (METRICS=local" in line for line in lines)


async def test_metrics_open_is_a_warning_at_start(tmp_path: Path) -> None:
    env = {"BROADCAST_MQ_TYPE": "memory", "PRESENCE_STORE": "memory", "METRICS": "open"}
    async with spawn_gateway(env, str(tmp_path / "gw.log")) as gw:
        log = gw.log()
    assert "WARNING realtime: METRICS=open: anyone who reaches this port can read /metrics" in log


def test_the_installed_command_runs_no_code_from_the_working_directory(tmp_path: Path) -> None:
    # `realtime bench` used to import bench/ from the cwd: a directory with its own bench/run.py
    # could run anything. The benchmarks are `python -m bench` in a checkout now.
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "__init__.py").write_text("")
    (tmp_path / "bench" / "run.py").write_text("def main(argv):\n    print('RAN')\n    return 0\n")
    result = run_cli("bench", cwd=tmp_path)
    assert result.returncode == 2
    assert "RAN" not in result.stdout
    assert "invalid choice: 'bench'" in result.stderr


def test_workers_get_a_health_check_a_busy_worker_survives() -> None:
    from realtime.cli import supervisor_options

    options = supervisor_options(2)
    assert options["workers"] == 2
    # uvicorn's default of 5 s killed healthy workers holding thousands of connections.
    assert options["timeout_worker_healthcheck"] >= 30
    uvicorn_config = inspect.signature(uvicorn.Config).parameters
    assert set(options) <= set(uvicorn_config)
