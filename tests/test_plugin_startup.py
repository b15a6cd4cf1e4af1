"""A plugin author's mistakes against the real command line: a broker whose start() never
returns (its first connect retries for ever, a common client-library default) and a bad
plugin setting. The gateway must exit with one line, never hang or print a traceback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from realtime.testing.waiting import free_port, port_open, wait_until

PLUGIN = '''
"""A throwaway broker plugin: start() retries a connection that never succeeds."""
import asyncio
import logging

from realtime.errors import BrokerError, ConfigError

log = logging.getLogger("hang")


class HangBroker:
    ready = False

    @classmethod
    def from_settings(cls, settings):
        level = settings.get("BROADCAST_HANG_RETRY_SECONDS", "0.2")
        try:
            seconds = float(level)
        except ValueError:
            raise ConfigError(
                "BROADCAST_HANG_RETRY_SECONDS", f"{level!r} is not a number of seconds"
            ) from None
        return cls(seconds, settings.get("BROADCAST_HANG_CLOSE") == "never")

    def __init__(self, seconds, close_hangs):
        self.seconds = seconds
        self.close_hangs = close_hangs

    async def start(self, deliver):
        if self.seconds == 0:
            raise BrokerError("nothing listens at 127.0.0.1:1")
        while True:
            log.warning("hang broker: connect failed, retrying")
            await asyncio.sleep(self.seconds)

    async def publish(self, kind, channel, data): ...
    async def subscribe(self, kind, channel): ...
    async def unsubscribe(self, kind, channel): ...
    async def close(self):
        if self.close_hangs:
            await asyncio.Event().wait()
'''


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding the plugin and its distribution metadata: on PYTHONPATH, its entry
    point is found exactly as an installed wheel's is."""
    root = tmp_path_factory.mktemp("hang-plugin")
    (root / "realtime_hang.py").write_text(textwrap.dedent(PLUGIN))
    info = root / "realtime_mq_hang-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: realtime-mq-hang\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[realtime.brokers]\nhang = realtime_hang:HangBroker\n")
    return root


def gateway(plugin_path: Path, port: int, log: Path, **env: str) -> subprocess.Popen[bytes]:
    full = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(plugin_path), os.environ.get("PYTHONPATH", "")]),
        "BROADCAST_MQ_TYPE": "hang",
        "PRESENCE_STORE": "memory",
        "SERVER_ADDR": f"127.0.0.1:{port}",
        "LOG_LEVEL": "info",
        **env,
    }
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "realtime", "serve"],
            env=full,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=log.parent,
        )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
        process.wait()


def test_a_bad_plugin_setting_is_one_line_and_exit_2(plugin_path: Path, tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "gw.log"
    process = gateway(plugin_path, port, log, BROADCAST_HANG_RETRY_SECONDS="soon")
    try:
        assert process.wait(30) == 2
    finally:
        stop(process)
    lines = log.read_text().strip().splitlines()
    assert lines == [
        "realtime: bad setting BROADCAST_HANG_RETRY_SECONDS: 'soon' is not a number of seconds"
    ]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_ends_a_start_that_never_returns(
    plugin_path: Path, tmp_path: Path, sig: signal.Signals
) -> None:
    port = free_port()
    log = tmp_path / "gw.log"
    # A bound far away: only the signal can end this start.
    process = gateway(plugin_path, port, log, START_TIMEOUT_SECONDS="600")
    try:
        wait_until(lambda: log.read_text().count("retrying") >= 2, 30, message="start retrying")
        # uvicorn binds the port only once start-up is over.
        assert not port_open("127.0.0.1", port)
        began = time.monotonic()
        process.send_signal(sig)
        code = process.wait(15)
        took = time.monotonic() - began
    finally:
        stop(process)
    text = log.read_text()
    assert code == 3, text
    assert f"start-up failed: stopped by {sig.name} during start-up" in text
    assert "Traceback" not in text
    assert took < 10, took


def test_a_start_past_its_bound_exits_with_one_line(plugin_path: Path, tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "gw.log"
    # Its close() hangs too: the same bound ends it.
    process = gateway(
        plugin_path, port, log, START_TIMEOUT_SECONDS="1", BROADCAST_HANG_CLOSE="never"
    )
    try:
        code = process.wait(30)
    finally:
        stop(process)
    text = log.read_text()
    assert code == 3, text
    failures = [line for line in text.splitlines() if "start-up failed" in line]
    assert len(failures) == 1, text
    assert failures[0].endswith(
        "start-up failed: broker HangBroker did not start within 1s (START_TIMEOUT_SECONDS)"
    )
    assert "closing the brokers and presence store took over 1s; exiting anyway" in text
    assert "Traceback" not in text
    # Nothing was ever bound: the port is free for anyone.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_a_start_that_raises_exits_with_one_line(plugin_path: Path, tmp_path: Path) -> None:
    log = tmp_path / "gw.log"
    process = gateway(plugin_path, free_port(), log, BROADCAST_HANG_RETRY_SECONDS="0")
    try:
        code = process.wait(30)
    finally:
        stop(process)
    text = log.read_text()
    assert code == 3, text
    failures = [line for line in text.splitlines() if "start-up failed" in line]
    assert len(failures) == 1, text
    assert failures[0].endswith(
        "start-up failed: broker HangBroker failed to start: nothing listens at 127.0.0.1:1"
    )
    assert "Traceback" not in text
