"""The two ways a test server runs, a native process group or a container, and the errors
of every launcher."""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from realtime.testing.waiting import LOCALHOST

log = logging.getLogger("realtime.testing.services")

STOP_TIMEOUT = 20.0


class ServiceError(RuntimeError):
    """A test server could not be started, stopped or reached."""


class RestartUnsupported(ServiceError):
    """The server was given from outside (an environment variable): we do not control it.

    Tests that stop or restart servers catch this and call ``pytest.skip``.
    """


def tail(path: Path, lines: int = 40) -> str:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            data = f.read().decode("utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(data.splitlines()[-lines:])


class Process:
    """One server process in its own process group, output appended to a log file.

    Its own session lets stop() reach helper processes (a JVM's or Erlang's children) with
    one killpg, and keeps a Ctrl-C meant for pytest from killing servers mid-teardown.
    """

    def __init__(
        self,
        argv: list[str],
        log_path: Path,
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.argv = argv
        self.log_path = log_path
        self.env = env
        self.cwd = cwd
        self._popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if self.alive():
            return
        with self.log_path.open("ab") as out:
            out.write(f"\n--- {time.strftime('%H:%M:%S')} start: {self.argv}\n".encode())
            out.flush()
            self._popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )

    def alive(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def returncode(self) -> int | None:
        return None if self._popen is None else self._popen.poll()

    def wait(self, timeout: float) -> bool:
        if self._popen is None:
            return True
        try:
            self._popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def _signal_group(self, sig: signal.Signals) -> None:
        if self._popen is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._popen.pid, sig)

    def send_signal(self, sig: signal.Signals) -> None:
        """Signal the server's whole process group: SIGSTOP/SIGCONT freeze and thaw it (fault
        tests); nothing happens once it has exited."""
        self._signal_group(sig)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        if self._popen is None:
            return
        if self._popen.poll() is None:
            self._signal_group(signal.SIGTERM)
            if not self.wait(timeout):
                log.warning("%s ignored SIGTERM for %.0fs; killing it", self.argv[0], timeout)
        # Also reaps helpers left in the group after the leader exited.
        self._signal_group(signal.SIGKILL)
        self.wait(5)

    def kill(self) -> None:
        self._signal_group(signal.SIGKILL)
        self.wait(5)

    def failure(self, what: str) -> ServiceError:
        return ServiceError(f"{what} (log {self.log_path}):\n{tail(self.log_path)}")


class Container:
    """A container kept by testcontainers, stopped and started in place so its host ports
    (bound explicitly, not picked by Docker) stay the same across a restart."""

    def __init__(
        self,
        image: str,
        *,
        ports: dict[int, int],
        env: dict[str, str] | None = None,
        command: list[str] | None = None,
    ) -> None:
        core = importlib.import_module("testcontainers.core.container")
        container: Any = core.DockerContainer(image)
        for inner, outer in ports.items():
            container.with_bind_ports(inner, (LOCALHOST, outer))
        for key, value in (env or {}).items():
            container.with_env(key, value)
        if command:
            container.with_command(command)
        self._container = container
        self._created = False

    def start(self) -> None:
        if not self._created:
            self._container.start()
            self._created = True
        else:
            self._container.get_wrapped_container().start()

    def stop(self) -> None:
        if self._created:
            self._container.get_wrapped_container().stop(timeout=int(STOP_TIMEOUT))

    def kill(self) -> None:
        if self._created:
            self._container.get_wrapped_container().kill()

    def remove(self) -> None:
        if self._created:
            self._created = False
            self._container.stop()

    def logs(self) -> str:
        if not self._created:
            return "(not created)"
        raw: bytes = self._container.get_wrapped_container().logs(tail=40)
        return raw.decode("utf-8", errors="replace")
