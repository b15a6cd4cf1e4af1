"""Real servers for integration tests: the plumbing every launcher shares, and Redis.

Each launcher resolves its server in this order:

1. an environment variable (``REDIS_URL``, ``REDIS_SENTINELS`` + ``REDIS_SENTINEL_MASTER``,
   ``REDIS_CLUSTER_NODES``): the server is used as it is, and
   ``stop()``/``start()``/``restart()``/``kill()`` raise ``RestartUnsupported``;
2. a container through testcontainers, when a Docker engine answers;
3. the real server binary started natively on free ports of 127.0.0.1 in a temporary directory.

``REALTIME_SERVICES_BACKEND=native`` or ``=docker`` skips the Docker probe and forces one of
the last two. Everything started here is stopped at interpreter exit, even after a failing
test, and its temporary directory is removed.

The Kafka and RabbitMQ launchers live in their plugins (``realtime_kafka.testing``,
``realtime_rabbitmq.testing``) and are built on :class:`Service` the same way.

A typical module-scoped fixture::

    @pytest.fixture(scope="module")
    def redis() -> Iterator[RedisServer]:
        with redis_server() as server:
            yield server

and a test that needs to restart the server::

    try:
        redis.restart()
    except RestartUnsupported as exc:
        pytest.skip(str(exc))
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import importlib
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Literal, Self, TypeVar
from urllib.parse import urlsplit

import redis
import redis.exceptions
from redis.backoff import NoBackoff
from redis.retry import Retry

from realtime.testing.waiting import free_port, wait_until

log = logging.getLogger("realtime.testing.services")

T = TypeVar("T")
# Where a server came from: an environment variable, a container, or a native process.
Origin = Literal["env", "docker", "native"]
Address = tuple[str, int]

LOCALHOST = "127.0.0.1"
# Generous, but bounded: a cold JVM or Erlang VM on a busy 2-core CI machine is slow.
START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0

REDIS_IMAGE = "redis:7"


class ServiceError(RuntimeError):
    """A test server could not be started, stopped or reached."""


class RestartUnsupported(ServiceError):
    """The server was given from outside (an environment variable): we do not control it.

    Tests that stop or restart servers catch this and call ``pytest.skip``.
    """


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


# -- processes and containers ---------------------------------------------------------------


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


# -- Redis ----------------------------------------------------------------------------------


def redis_client(host: str, port: int) -> redis.Redis:
    """A redis-py client for probes: one try, short timeouts.

    The caller polls, and redis-py's own retries would turn a port held by some other
    program into half a minute of waiting.
    """
    return redis.Redis(
        host=host,
        port=port,
        socket_timeout=1,
        socket_connect_timeout=1,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
    )


def redis_pings(host: str, port: int) -> bool:
    with redis_client(host, port) as client:
        return bool(client.ping())


def _redis_argv(port: int, workdir: Path, *extra: str) -> list[str]:
    binary = which("redis-server", "run scripts/install-services redis")
    # No RDB snapshots and no AOF: a restart comes back empty, which is what tests of
    # "the broker lost its state" want, and nothing is written to disk while tests run.
    return [
        binary,
        "--port", str(port),
        "--bind", LOCALHOST,
        "--dir", str(workdir),
        "--save", "",
        "--appendonly", "no",
        "--daemonize", "no",
        "--protected-mode", "no",
        "--logfile", "",
        *extra,
    ]  # fmt: skip


class _RedisService(Service):
    not_ready = (OSError, TimeoutError, redis.exceptions.RedisError)


class RedisServer(_RedisService):
    name = "redis"

    def __init__(
        self,
        kind: Origin,
        host: str,
        port: int,
        db: int = 0,
        *,
        container: Container | None = None,
    ) -> None:
        super().__init__(kind, container=container)
        self.host = host
        self.port = port
        self.db = db

    def _prepare_native(self) -> None:
        argv = _redis_argv(self.port, self.tmp)
        self.add_process(Process(argv, self.tmp / "redis.log", cwd=self.tmp))

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/{self.db}"

    @property
    def address(self) -> Address:
        return (self.host, self.port)

    def _wait_ready(self, deadline: float) -> None:
        self.wait_for(
            functools.partial(redis_pings, self.host, self.port),
            deadline,
            f"redis {self.host}:{self.port} answering PING",
        )


def redis_server() -> RedisServer:
    """A running Redis: ``.url``, ``.port``, ``.stop()``, ``.start()``, ``.restart()``, ``.kill()``.

    A restarted native or Docker server comes back empty on the same port.
    """
    url = os.environ.get("REDIS_URL")
    if url:
        parts = urlsplit(url)
        db = int(parts.path.strip("/") or 0)
        return RedisServer("env", parts.hostname or LOCALHOST, parts.port or 6379, db)
    if backend() == "native":
        return native_redis()
    port = free_port()
    container = Container(
        REDIS_IMAGE,
        ports={6379: port},
        command=["redis-server", "--save", "", "--appendonly", "no"],
    )
    return RedisServer("docker", LOCALHOST, port, container=container).launch()


def native_redis() -> RedisServer:
    """A standalone redis-server process on a free port, whatever the backend."""
    return RedisServer("native", LOCALHOST, free_port()).launch()


class RedisSentinelSetup(_RedisService):
    """A master plus sentinels watching it. Only native or given by environment: in Docker,
    sentinels would announce container addresses that the host cannot reach."""

    name = "redis-sentinel"

    def __init__(
        self,
        kind: Origin,
        sentinels: list[Address],
        master_name: str,
        master: RedisServer | None = None,
    ) -> None:
        super().__init__(kind)
        self.sentinels = sentinels
        self.master_name = master_name
        # None when given by environment: we do not know (or own) the master then.
        self.master = master

    def _prepare_native(self) -> None:
        master = self.master
        assert master is not None, "a native sentinel setup watches a master of its own"
        # A majority, so that with 3 sentinels one crash does not trigger a failover.
        quorum = len(self.sentinels) // 2 + 1
        sentinel_bin = shutil.which("redis-sentinel")
        name = self.master_name
        for _, port in self.sentinels:
            conf = self.tmp / f"sentinel-{port}.conf"
            # Sentinel rewrites its config file at run time, so each gets its own, writable.
            conf.write_text(
                f"port {port}\n"
                f"bind {LOCALHOST}\n"
                "daemonize no\n"
                'logfile ""\n'
                f"dir {self.tmp}\n"
                f"sentinel monitor {name} {LOCALHOST} {master.port} {quorum}\n"
                f"sentinel down-after-milliseconds {name} 2000\n"
                f"sentinel failover-timeout {name} 10000\n"
            )
            if sentinel_bin:
                argv = [sentinel_bin, str(conf)]
            else:
                server_bin = which("redis-server", "run scripts/install-services redis")
                argv = [server_bin, str(conf), "--sentinel"]
            log_path = self.tmp / f"sentinel-{port}.log"
            self.add_process(Process(argv, log_path, cwd=self.tmp))

    def _start_native(self) -> None:
        if self.master is not None and not self.master.alive():
            self.master.start()
        super()._start_native()

    def _stop_native(self) -> None:
        super()._stop_native()
        if self.master is not None:
            self.master.stop()

    def _cleanup_native(self) -> None:
        if self.master is not None:
            self.master.close()

    def _ask_master(self, host: str, port: int) -> Address | None:
        with redis_client(host, port) as client:
            reply = client.sentinel_get_master_addr_by_name(self.master_name)
        if not reply:
            return None
        addr_host, addr_port = reply
        return (str(addr_host), int(addr_port))

    def master_address(self) -> Address | None:
        """What the first sentinel answers to SENTINEL get-master-addr-by-name."""
        host, port = self.sentinels[0]
        return self._ask_master(host, port)

    def _wait_ready(self, deadline: float) -> None:
        assert self.master is not None
        expected = self.master.port

        def all_agree() -> bool:
            for host, port in self.sentinels:
                address = self._ask_master(host, port)
                if address is None or address[1] != expected:
                    return False
            return True

        self.wait_for(all_agree, deadline, "redis sentinels agreeing on the master")


def redis_sentinel_setup(sentinels: int = 1, master_name: str = "mymaster") -> RedisSentinelSetup:
    """A Redis master and 1..3 sentinels monitoring it under ``master_name``.

    ``.sentinels`` is a list of (host, port), ``.master_name`` the monitored name and
    ``.master`` the master's RedisServer handle (kill it to test failover detection).
    """
    given = os.environ.get("REDIS_SENTINELS")
    if given:
        addrs = [parse_hostport(item, 26379) for item in given.split(",") if item.strip()]
        name = os.environ.get("REDIS_SENTINEL_MASTER", master_name)
        return RedisSentinelSetup("env", addrs, name)
    if not 1 <= sentinels <= 3:
        raise ValueError("sentinels must be 1, 2 or 3")
    master = native_redis()
    addrs = [(LOCALHOST, free_port()) for _ in range(sentinels)]
    # A failed launch closes the master too.
    return RedisSentinelSetup("native", addrs, master_name, master).launch()


class RedisClusterSetup(_RedisService):
    """Three masters, no replicas, slots spread by ``redis-cli --cluster create``."""

    name = "redis-cluster"

    def __init__(self, kind: Origin, nodes: list[Address]) -> None:
        super().__init__(kind)
        self.nodes = nodes
        self._created = False

    def _prepare_native(self) -> None:
        for _, port in self.nodes:
            self._add_node(port)

    def _add_node(self, port: int) -> None:
        workdir = self.tmp / str(port)
        workdir.mkdir()
        argv = _redis_argv(
            port,
            workdir,
            "--cluster-enabled", "yes",
            "--cluster-config-file", str(workdir / "nodes.conf"),
            # The bus port defaults to port + 10000, which can pass 65535 or be taken for
            # an ephemeral port; ask for a free one explicitly.
            "--cluster-port", str(free_port()),
            "--cluster-node-timeout", "5000",
        )  # fmt: skip
        self.add_process(Process(argv, workdir / "redis.log", cwd=workdir))

    @property
    def url(self) -> str:
        host, port = self.nodes[0]
        # No "/0": redis-py's cluster client refuses a database number.
        return f"redis://{host}:{port}"

    def _create(self, deadline: float) -> None:
        for host, port in self.nodes:
            self.wait_for(
                functools.partial(redis_pings, host, port),
                deadline,
                f"cluster node {host}:{port} answering PING",
            )
        cli = which("redis-cli", "run scripts/install-services redis")
        argv = [cli, "--cluster", "create", *(f"{h}:{p}" for h, p in self.nodes),
                "--cluster-replicas", "0", "--cluster-yes"]  # fmt: skip
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=max(5.0, deadline - time.monotonic()),
            check=False,
        )
        if done.returncode != 0:
            out = (done.stdout + done.stderr).decode("utf-8", errors="replace")
            raise ServiceError(f"redis-cli --cluster create failed:\n{out[-3000:]}")
        self._created = True

    def _wait_ready(self, deadline: float) -> None:
        if not self._created:
            self._create(deadline)

        def all_ok() -> bool:
            for host, port in self.nodes:
                with redis_client(host, port) as client:
                    info = client.cluster("INFO")
                if info.get("cluster_state") != "ok":
                    return False
            return True

        self.wait_for(all_ok, deadline, "redis cluster_state:ok on every node")


def redis_cluster(masters: int = 3) -> RedisClusterSetup:
    """A Redis Cluster of ``masters`` nodes on 127.0.0.1: ``.nodes`` (host, port), ``.url``.

    Only native or given by ``REDIS_CLUSTER_NODES``: cluster nodes in containers announce
    addresses the host cannot reach. A restart keeps the slot layout (nodes.conf) but no keys.
    """
    given = os.environ.get("REDIS_CLUSTER_NODES")
    if given:
        nodes = [parse_hostport(item, 6379) for item in given.split(",") if item.strip()]
        return RedisClusterSetup("env", nodes)
    nodes = [(LOCALHOST, free_port()) for _ in range(masters)]
    return RedisClusterSetup("native", nodes).launch()


__all__ = [
    "Container",
    "Origin",
    "Process",
    "RedisClusterSetup",
    "RedisSentinelSetup",
    "RedisServer",
    "RestartUnsupported",
    "Service",
    "ServiceError",
    "backend",
    "cache_dir",
    "native_redis",
    "parse_hostport",
    "redis_client",
    "redis_cluster",
    "redis_pings",
    "redis_sentinel_setup",
    "redis_server",
    "run_sync",
    "which",
]
