"""What every test-server launcher shares: where a server comes from, the handle's lifecycle,
and cleanup at exit. See :mod:`realtime.testing.services` for the whole picture."""

from __future__ import annotations

import asyncio
import atexit
import functools
import importlib
import logging
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Literal, Self, TypeVar

from realtime.testing.services.processes import (
    Container,
    Process,
    RestartUnsupported,
    ServiceError,
    tail,
)
from realtime.testing.waiting import wait_until

log = logging.getLogger("realtime.testing.services")

T = TypeVar("T")
# Where a server came from: an environment variable, a container, or a native process.
Origin = Literal["env", "docker", "native"]
Address = tuple[str, int]

# Generous, but bounded: a cold JVM or Erlang VM on a busy 2-core CI machine is slow.
START_TIMEOUT = 60.0


# -- where servers come from ----------------------------------------------------------------


def backend() -> Literal["docker", "native"]:
    """Docker or native, for a server no environment variable gives."""
    forced = os.environ.get("REALTIME_SERVICES_BACKEND", "").strip().lower()
    if forced in ("docker", "native"):
        return "docker" if forced == "docker" else "native"
    return "docker" if _docker_answers() else "native"


@functools.cache
def _docker_answers() -> bool:
    # Asked once per process, and cheaply: most developer machines and this project's CI
    # have no engine, and the probe must not cost each fixture a timeout.
    if not os.environ.get("DOCKER_HOST") and not Path("/var/run/docker.sock").exists():
        return False
    try:
        docker = importlib.import_module("docker")
        client = docker.from_env(timeout=1)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:
        log.debug("no Docker engine answers: %s", exc)
        return False
    return True


def cache_dir() -> Path:
    """Where scripts/install-services keeps what it downloads (the Kafka jars)."""
    base = os.environ.get("REALTIME_SERVICES_CACHE")
    if base:
        return Path(base)
    return Path(os.environ.get("HOME", str(Path.home()))) / ".cache" / "realtime-mq"


def which(name: str, hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ServiceError(f"{name} not found on PATH; {hint}")
    return path


def parse_hostport(item: str, default_port: int) -> Address:
    host, _, port = item.strip().rpartition(":")
    if not host:
        return (port, default_port)
    return (host.strip("[]"), int(port))


def run_sync(factory: Callable[[], Coroutine[Any, Any, T]], timeout: float) -> T:
    """Run a coroutine on a fresh event loop in a thread, so sync code can call async
    clients whether or not the calling thread already runs a loop."""
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(factory()))
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=target, name="realtime-services-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError("probe did not finish")
    if error:
        raise error[0]
    return result[0]


_live: set[Service] = set()
_live_lock = threading.Lock()


@atexit.register
def _close_all() -> None:
    with _live_lock:
        services = list(_live)
    for service in services:
        try:
            service.close()
        except Exception:
            log.exception("could not clean up %s", service.name)


def _sigterm_exits(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


@functools.cache
def _cleanup_on_sigterm() -> None:
    # Python's default SIGTERM ends the process without running atexit, which would leave
    # servers running after `kill` or a CI job stop. Only when nobody set a handler yet,
    # and only from the main thread, where signal handlers can be set.
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _sigterm_exits)


class Service:
    """What every handle shares: lifecycle, context manager, cleanup at exit.

    A subclass runs either ``container`` (Docker) or the processes its
    :meth:`_prepare_native` adds with :meth:`add_process`, and says in :meth:`_wait_ready`
    when it serves.
    """

    name: ClassVar[str] = "service"
    # What a probe raises while the server is not up yet; anything else fails at once.
    not_ready: ClassVar[tuple[type[BaseException], ...]] = (OSError, TimeoutError)

    def __init__(self, kind: Origin, *, container: Container | None = None) -> None:
        self.kind: Origin = kind
        self.container = container
        self._procs: list[Process] = []
        self._tmp: Path | None = None
        self._closed = False
        if kind != "env":
            self._tmp = Path(tempfile.mkdtemp(prefix=f"realtime-{self.name}-"))
            _cleanup_on_sigterm()
            with _live_lock:
                _live.add(self)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.kind}>"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def tmp(self) -> Path:
        assert self._tmp is not None, "no temporary directory for a server given from outside"
        return self._tmp

    @property
    def processes(self) -> tuple[Process, ...]:
        return tuple(self._procs)

    def add_process(self, process: Process) -> Process:
        """Run ``process`` as part of this server (started in order, stopped in reverse)."""
        self._procs.append(process)
        return process

    def alive(self) -> bool:
        """Every native process of this server is running."""
        return bool(self._procs) and all(p.alive() for p in self._procs)

    def _controlled(self, action: str) -> None:
        if self.kind == "env":
            raise RestartUnsupported(
                f"cannot {action} {self.name}: it was given by an environment variable"
            )
        if self._closed:
            raise ServiceError(f"{self.name} is closed")

    def start(self) -> None:
        """Start again after stop() or kill(): same ports, then wait until it serves."""
        self._controlled("start")
        deadline = time.monotonic() + START_TIMEOUT
        if self.container is not None:
            self.container.start()
        else:
            self._start_native()
        try:
            self._wait_ready(deadline)
        except ServiceError as exc:
            raise ServiceError(f"{self.name} did not start: {exc}") from exc
        except Exception as exc:
            detail = self.container.logs() if self.container else self._logs()
            raise ServiceError(f"{self.name} did not become ready: {exc}\n{detail}") from exc

    def stop(self) -> None:
        self._controlled("stop")
        if self.container is not None:
            self.container.stop()
        else:
            self._stop_native()

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush, as if the machine lost power."""
        self._controlled("kill")
        if self.container is not None:
            self.container.kill()
        else:
            for proc in reversed(self._procs):
                proc.kill()

    def restart(self) -> None:
        self._controlled("restart")
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop everything and remove the temporary directory. Safe to call twice."""
        if self._closed or self.kind == "env":
            return
        self._closed = True
        try:
            if self.container is not None:
                self.container.remove()
            else:
                self._stop_native()
                self._cleanup_native()
        finally:
            with _live_lock:
                _live.discard(self)
            if self._tmp is not None:
                shutil.rmtree(self._tmp, ignore_errors=True)

    def launch(self) -> Self:
        """First start; on failure, clean up before raising so nothing is left running."""
        try:
            if self.kind == "native":
                self._prepare_native()
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def wait_for(self, check: Callable[[], object], deadline: float, what: str) -> None:
        """Poll ``check`` until ``deadline``; a crashed process fails at once, not then."""

        def attempt() -> object:
            self._check_alive()
            return check()

        wait_until(
            attempt,
            timeout=max(0.0, deadline - time.monotonic()),
            interval=0.1,
            ignore=self.not_ready,
            message=what,
        )

    # Native servers override these.
    def _prepare_native(self) -> None:
        """Write configuration into :attr:`tmp` and add the processes; once, before launch."""

    def _start_native(self) -> None:
        for proc in self._procs:
            proc.start()

    def _stop_native(self) -> None:
        for proc in reversed(self._procs):
            proc.stop()

    def _cleanup_native(self) -> None:
        pass

    def _wait_ready(self, deadline: float) -> None:
        raise NotImplementedError

    def _logs(self) -> str:
        return "\n".join(f"{p.log_path}:\n{tail(p.log_path)}" for p in self._procs)

    def _check_alive(self) -> None:
        for proc in self._procs:
            if not proc.alive():
                raise proc.failure(f"{proc.argv[0]} exited with code {proc.returncode()}")
