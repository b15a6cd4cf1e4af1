"""Real Redis, RabbitMQ and Kafka servers for the integration tests.

Each launcher resolves its server in this order:

1. an environment variable (``REDIS_URL``, ``REDIS_SENTINELS`` + ``REDIS_SENTINEL_MASTER``,
   ``REDIS_CLUSTER_NODES``, ``RABBITMQ_URL``, ``KAFKA_BOOTSTRAP_SERVERS``): the server is used
   as it is, and ``stop()``/``start()``/``restart()``/``kill()`` raise ``RestartUnsupported``;
2. a container through testcontainers, when a Docker engine answers;
3. the real server binary started natively on free ports of 127.0.0.1 in a temporary directory.

``REALTIME_SERVICES_BACKEND=native`` or ``=docker`` skips the Docker probe and forces one of
the last two. Everything started here is stopped at interpreter exit, even after a failing
test, and its temporary directory is removed.

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
import base64
import contextlib
import functools
import importlib
import importlib.util
import logging
import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Coroutine
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self, TypeVar
from urllib.parse import urlsplit

from realtime.testing.waiting import free_port, port_open, wait_until, wait_until_async

log = logging.getLogger("realtime.testing.servers")

T = TypeVar("T")
Kind = Literal["env", "docker", "native"]
Address = tuple[str, int]

LOCALHOST = "127.0.0.1"
# Generous, but bounded: a cold JVM or Erlang VM on a busy 2-core CI machine is slow.
START_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0

REDIS_IMAGE = "redis:7"
RABBITMQ_IMAGE = "rabbitmq:3.13"
KAFKA_IMAGE = "apache/kafka:4.1.0"


class ServiceError(RuntimeError):
    """A test server could not be started, stopped or reached."""


class RestartUnsupported(ServiceError):
    """The server was given from outside (an environment variable): we do not control it.

    Tests that stop or restart servers catch this and call ``pytest.skip``.
    """


# -- helpers for tests ----------------------------------------------------------------------


# -- where servers come from ----------------------------------------------------------------


def _backend() -> Literal["docker", "native"]:
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


def _cache_dir() -> Path:
    base = os.environ.get("REALTIME_SERVICES_CACHE")
    if base:
        return Path(base)
    return Path(os.environ.get("HOME", str(Path.home()))) / ".cache" / "realtime-mq"


def kafka_libs_dir() -> Path:
    """Where scripts/install-services puts the Kafka broker jars."""
    return _cache_dir() / "kafka-libs"


def _which(name: str, hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ServiceError(f"{name} not found on PATH; {hint}")
    return path


# -- processes ------------------------------------------------------------------------------


def _tail(path: Path, lines: int = 40) -> str:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            data = f.read().decode("utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(data.splitlines()[-lines:])


class _Proc:
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
        return ServiceError(f"{what} (log {self.log_path}):\n{_tail(self.log_path)}")


class _Container:
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
    """What every handle shares: lifecycle, context manager, cleanup at exit."""

    name = "service"

    def __init__(self, kind: Kind) -> None:
        self.kind: Kind = kind
        self._procs: list[_Proc] = []
        self._container: _Container | None = None
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
        if self._container is not None:
            self._container.start()
        else:
            self._start_native()
        try:
            self._wait_ready(deadline)
        except ServiceError as exc:
            raise ServiceError(f"{self.name} did not start: {exc}") from exc
        except Exception as exc:
            detail = self._container.logs() if self._container else self._logs()
            raise ServiceError(f"{self.name} did not become ready: {exc}\n{detail}") from exc

    def stop(self) -> None:
        self._controlled("stop")
        if self._container is not None:
            self._container.stop()
        else:
            self._stop_native()

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush, as if the machine lost power."""
        self._controlled("kill")
        if self._container is not None:
            self._container.kill()
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
            if self._container is not None:
                self._container.remove()
            else:
                self._stop_native()
                self._cleanup_native()
        finally:
            with _live_lock:
                _live.discard(self)
            if self._tmp is not None:
                shutil.rmtree(self._tmp, ignore_errors=True)

    def _launch(self) -> Self:
        """First start; on failure, clean up before raising so nothing is left running."""
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    # Native servers override these.
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
        return "\n".join(f"{p.log_path}:\n{_tail(p.log_path)}" for p in self._procs)

    def _check_alive(self) -> None:
        for proc in self._procs:
            if not proc.alive():
                raise proc.failure(f"{proc.argv[0]} exited with code {proc.returncode()}")


def _poll(check: Callable[[], bool], deadline: float, what: str, alive: Callable[[], None]) -> None:
    """Poll ``check`` until ``deadline``; a crashed process fails at once, not at the deadline."""
    last: BaseException | None = None
    while True:
        alive()
        try:
            if check():
                return
        except Exception as exc:
            last = exc
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what}: not ready in time (last error: {last!r})") from last
        time.sleep(0.1)


# -- Redis ----------------------------------------------------------------------------------


def _redis_call(host: str, port: int, *args: str) -> Any:
    redis = importlib.import_module("redis")
    retry = importlib.import_module("redis.retry")
    backoff = importlib.import_module("redis.backoff")
    # One try, short timeouts: the caller polls, and redis-py's own retries would turn a
    # port held by some other program into half a minute of waiting.
    with redis.Redis(
        host=host,
        port=port,
        socket_timeout=1,
        socket_connect_timeout=1,
        retry=retry.Retry(backoff.NoBackoff(), 0),
    ) as r:
        return r.execute_command(*args)


def _redis_pings(host: str, port: int) -> bool:
    return _redis_call(host, port, "PING") in (True, b"PONG", "PONG")


def _redis_argv(port: int, workdir: Path, *extra: str) -> list[str]:
    binary = _which("redis-server", "run scripts/install-services redis")
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


class RedisServer(Service):
    name = "redis"

    def __init__(self, kind: Kind, host: str, port: int, db: int = 0) -> None:
        super().__init__(kind)
        self.host = host
        self.port = port
        self.db = db

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/{self.db}"

    @property
    def address(self) -> Address:
        return (self.host, self.port)

    def _wait_ready(self, deadline: float) -> None:
        _poll(
            functools.partial(_redis_pings, self.host, self.port),
            deadline,
            f"redis {self.host}:{self.port}",
            self._check_alive,
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
    if _backend() == "native":
        return _native_redis()
    port = free_port()
    server = RedisServer("docker", LOCALHOST, port)
    server._container = _Container(
        REDIS_IMAGE,
        ports={6379: port},
        command=["redis-server", "--save", "", "--appendonly", "no"],
    )
    return server._launch()


class RedisSentinelSetup(Service):
    """A master plus sentinels watching it. Only native or given by environment: in Docker,
    sentinels would announce container addresses that the host cannot reach."""

    name = "redis-sentinel"

    def __init__(
        self,
        kind: Kind,
        sentinels: list[Address],
        master_name: str,
        master: RedisServer | None = None,
    ) -> None:
        super().__init__(kind)
        self.sentinels = sentinels
        self.master_name = master_name
        # None when given by environment: we do not know (or own) the master then.
        self.master = master

    def _start_native(self) -> None:
        if self.master is not None and not self.master._procs[0].alive():
            self.master.start()
        super()._start_native()

    def _stop_native(self) -> None:
        super()._stop_native()
        if self.master is not None:
            self.master.stop()

    def _cleanup_native(self) -> None:
        if self.master is not None:
            self.master.close()

    def master_address(self) -> Address | None:
        """What the first sentinel answers to SENTINEL get-master-addr-by-name."""
        host, port = self.sentinels[0]
        reply = _redis_call(host, port, "SENTINEL", "get-master-addr-by-name", self.master_name)
        if not reply:
            return None
        addr_host, addr_port = (x.decode() if isinstance(x, bytes) else str(x) for x in reply)
        return (addr_host, int(addr_port))

    def _wait_ready(self, deadline: float) -> None:
        assert self.master is not None
        expected = self.master.address

        def all_agree() -> bool:
            for host, port in self.sentinels:
                reply = _redis_call(
                    host, port, "SENTINEL", "get-master-addr-by-name", self.master_name
                )
                if not reply or int(reply[1]) != expected[1]:
                    return False
            return True

        _poll(all_agree, deadline, "redis sentinels", self._check_alive)


def redis_sentinel_setup(sentinels: int = 1, master_name: str = "mymaster") -> RedisSentinelSetup:
    """A Redis master and 1..3 sentinels monitoring it under ``master_name``.

    ``.sentinels`` is a list of (host, port), ``.master_name`` the monitored name and
    ``.master`` the master's RedisServer handle (kill it to test failover detection).
    """
    given = os.environ.get("REDIS_SENTINELS")
    if given:
        addrs = [_parse_hostport(item, 26379) for item in given.split(",") if item.strip()]
        name = os.environ.get("REDIS_SENTINEL_MASTER", master_name)
        return RedisSentinelSetup("env", addrs, name)
    if not 1 <= sentinels <= 3:
        raise ValueError("sentinels must be 1, 2 or 3")
    master = _native_redis()
    ports = [free_port() for _ in range(sentinels)]
    setup = RedisSentinelSetup("native", [(LOCALHOST, p) for p in ports], master_name, master)
    # A majority, so that with 3 sentinels one crash does not trigger a failover.
    quorum = sentinels // 2 + 1
    sentinel_bin = shutil.which("redis-sentinel")
    for port in ports:
        conf = setup.tmp / f"sentinel-{port}.conf"
        # Sentinel rewrites its config file at run time, so each gets its own, writable.
        conf.write_text(
            f"port {port}\n"
            f"bind {LOCALHOST}\n"
            "daemonize no\n"
            'logfile ""\n'
            f"dir {setup.tmp}\n"
            f"sentinel monitor {master_name} {LOCALHOST} {master.port} {quorum}\n"
            f"sentinel down-after-milliseconds {master_name} 2000\n"
            f"sentinel failover-timeout {master_name} 10000\n"
        )
        if sentinel_bin:
            argv = [sentinel_bin, str(conf)]
        else:
            argv = [_which("redis-server", "run scripts/install-services redis"), str(conf),
                    "--sentinel"]  # fmt: skip
        setup._procs.append(_Proc(argv, setup.tmp / f"sentinel-{port}.log", cwd=setup.tmp))
    return setup._launch()


def _native_redis() -> RedisServer:
    server = RedisServer("native", LOCALHOST, free_port())
    argv = _redis_argv(server.port, server.tmp)
    server._procs.append(_Proc(argv, server.tmp / "redis.log", cwd=server.tmp))
    return server._launch()


def _parse_hostport(item: str, default_port: int) -> Address:
    host, _, port = item.strip().rpartition(":")
    if not host:
        return (port, default_port)
    return (host.strip("[]"), int(port))


class RedisCluster(Service):
    """Three masters, no replicas, slots spread by ``redis-cli --cluster create``."""

    name = "redis-cluster"

    def __init__(self, kind: Kind, nodes: list[Address]) -> None:
        super().__init__(kind)
        self.nodes = nodes
        self._created = False

    @property
    def url(self) -> str:
        host, port = self.nodes[0]
        # No "/0": redis-py's cluster client refuses a database number.
        return f"redis://{host}:{port}"

    def _create(self, deadline: float) -> None:
        for host, port in self.nodes:
            _poll(
                functools.partial(_redis_pings, host, port),
                deadline,
                f"cluster node {host}:{port}",
                self._check_alive,
            )
        cli = _which("redis-cli", "run scripts/install-services redis")
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
                info = _redis_call(host, port, "CLUSTER", "INFO")
                text = info.decode() if isinstance(info, bytes) else str(info)
                if "cluster_state:ok" not in text:
                    return False
            return True

        _poll(all_ok, deadline, "redis cluster state ok", self._check_alive)


def redis_cluster(masters: int = 3) -> RedisCluster:
    """A Redis Cluster of ``masters`` nodes on 127.0.0.1: ``.nodes`` (host, port), ``.url``.

    Only native or given by ``REDIS_CLUSTER_NODES``: cluster nodes in containers announce
    addresses the host cannot reach. A restart keeps the slot layout (nodes.conf) but no keys.
    """
    given = os.environ.get("REDIS_CLUSTER_NODES")
    if given:
        nodes = [_parse_hostport(item, 6379) for item in given.split(",") if item.strip()]
        return RedisCluster("env", nodes)
    ports = [free_port() for _ in range(masters)]
    cluster = RedisCluster("native", [(LOCALHOST, p) for p in ports])
    for port in ports:
        workdir = cluster.tmp / str(port)
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
        cluster._procs.append(_Proc(argv, workdir / "redis.log", cwd=workdir))
    return cluster._launch()


# -- RabbitMQ -------------------------------------------------------------------------------


def _amqp_frame(kind: int, channel: int, payload: bytes) -> bytes:
    return struct.pack(">BHI", kind, channel, len(payload)) + payload + b"\xce"


def _read_frame(sock: socket.socket) -> tuple[int, bytes]:
    header = _recv_exact(sock, 7)
    kind, _channel, size = struct.unpack(">BHI", header)
    payload = _recv_exact(sock, size + 1)[:-1]
    return kind, payload


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("connection closed during AMQP handshake")
        data += chunk
    return data


def amqp_login_works(url: str, timeout: float = 3.0) -> bool:
    """Do an AMQP 0-9-1 handshake up to Connection.Tune: the broker is up and the login is
    accepted. Raw sockets, so it works with or without a running event loop."""
    parts = urlsplit(url)
    user, password = parts.username or "guest", parts.password or "guest"
    with socket.create_connection((parts.hostname or LOCALHOST, parts.port or 5672), timeout) as s:
        s.settimeout(timeout)
        s.sendall(b"AMQP\x00\x00\x09\x01")
        kind, payload = _read_frame(s)
        if kind != 1 or payload[:4] != struct.pack(">HH", 10, 10):
            return False  # not Connection.Start
        response = f"\0{user}\0{password}".encode()
        start_ok = (
            struct.pack(">HH", 10, 11)
            + struct.pack(">I", 0)  # client properties: empty table
            + bytes([5]) + b"PLAIN"
            + struct.pack(">I", len(response)) + response
            + bytes([5]) + b"en_US"
        )  # fmt: skip
        s.sendall(_amqp_frame(1, 0, start_ok))
        kind, payload = _read_frame(s)
        # Connection.Tune means authenticated; a refused login closes the socket instead.
        return kind == 1 and payload[:4] == struct.pack(">HH", 10, 30)


def _rabbitmq_scripts() -> Path:
    # On Debian /usr/sbin/rabbitmq-server is a wrapper that switches to the rabbitmq user
    # and writes to /var/log; the real scripts live here and run as any user.
    debian = Path("/usr/lib/rabbitmq/bin")
    if (debian / "rabbitmq-server").exists():
        return debian
    found = _which("rabbitmq-server", "run scripts/install-services rabbitmq")
    return Path(os.path.realpath(found)).parent


class RabbitMQServer(Service):
    name = "rabbitmq"

    def __init__(self, kind: Kind, url: str) -> None:
        super().__init__(kind)
        parts = urlsplit(url)
        self.url = url
        self.host = parts.hostname or LOCALHOST
        self.port = parts.port or 5672
        self.nodename = ""
        self._env: dict[str, str] = {}
        self._scripts = Path()

    def _ctl(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [str(self._scripts / "rabbitmqctl"), "-n", self.nodename, *args],
            env=self._env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
        )

    def _stop_native(self) -> None:
        if any(p.alive() for p in self._procs):
            # A clean stop lets the node flush Mnesia, so the next start is not a recovery.
            try:
                done = self._ctl("stop", timeout=STOP_TIMEOUT)
                if done.returncode != 0:
                    log.warning("rabbitmqctl stop failed: %s", done.stderr.decode(errors="replace"))
            except subprocess.TimeoutExpired:
                log.warning("rabbitmqctl stop timed out")
        super()._stop_native()

    def _cleanup_native(self) -> None:
        # epmd was started by the node on a port of our own (ERL_EPMD_PORT), so it is ours
        # to stop and no other Erlang node on the machine depends on it.
        epmd = shutil.which("epmd")
        if epmd and self._env:
            subprocess.run(
                [epmd, "-kill"],
                env=self._env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=10,
                check=False,
            )

    def _wait_ready(self, deadline: float) -> None:
        _poll(lambda: amqp_login_works(self.url), deadline, "rabbitmq", self._check_alive)


def rabbitmq_server() -> RabbitMQServer:
    """A running RabbitMQ: ``.url`` (amqp://guest:guest@127.0.0.1:PORT/), ``.stop()``,
    ``.start()``, ``.restart()``. A restart keeps durable queues and messages."""
    given = os.environ.get("RABBITMQ_URL")
    if given:
        return RabbitMQServer("env", given)
    port = free_port()
    url = f"amqp://guest:guest@{LOCALHOST}:{port}/"
    kind = _backend()
    server = RabbitMQServer(kind, url)
    if kind == "docker":
        server._container = _Container(RABBITMQ_IMAGE, ports={5672: port})
        return server._launch()

    tmp = server.tmp
    home = tmp / "home"
    home.mkdir()
    # Erlang reads the cookie from $HOME; our own HOME gives the node and rabbitmqctl the same
    # cookie whoever runs the tests (root's HOME, the rabbitmq user's, a CI user's).
    cookie = home / ".erlang.cookie"
    cookie.write_text(uuid.uuid4().hex.upper())
    cookie.chmod(0o400)
    (tmp / "enabled_plugins").write_text("[].\n")
    (tmp / "rabbitmq-env.conf").write_text("# empty: ignore /etc/rabbitmq/rabbitmq-env.conf\n")
    (tmp / "rabbitmq.conf").write_text(
        f"listeners.tcp.1 = {LOCALHOST}:{port}\n"
        "loopback_users.guest = true\n"
        # Tests must not stall on a disk alarm on a nearly full CI disk.
        "disk_free_limit.absolute = 50MB\n"
        "log.console = true\n"
        "log.console.level = info\n"
    )
    server.nodename = f"rmqtest-{os.getpid()}-{port}@localhost"
    server._scripts = _rabbitmq_scripts()
    server._env = {
        **os.environ,
        "HOME": str(home),
        "RABBITMQ_NODENAME": server.nodename,
        "RABBITMQ_NODE_IP_ADDRESS": LOCALHOST,
        "RABBITMQ_NODE_PORT": str(port),
        "RABBITMQ_DIST_PORT": str(free_port()),
        "RABBITMQ_MNESIA_BASE": str(tmp / "mnesia"),
        "RABBITMQ_LOG_BASE": str(tmp / "log"),
        "RABBITMQ_CONFIG_FILE": str(tmp / "rabbitmq.conf"),
        "RABBITMQ_CONF_ENV_FILE": str(tmp / "rabbitmq-env.conf"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(tmp / "enabled_plugins"),
        "RABBITMQ_PID_FILE": str(tmp / "rabbitmq.pid"),
        "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        # A private epmd on its own port: we never touch (or depend on) a system one.
        "ERL_EPMD_PORT": str(free_port()),
        "ERL_EPMD_ADDRESS": LOCALHOST,
    }
    for var in ("RABBITMQ_ERLANG_COOKIE", "RABBITMQ_USE_LONGNAME"):
        server._env.pop(var, None)
    argv = [str(server._scripts / "rabbitmq-server")]
    server._procs.append(_Proc(argv, tmp / "rabbitmq.log", env=server._env, cwd=tmp))
    return server._launch()


# -- Kafka ----------------------------------------------------------------------------------


def _run_in_thread(factory: Callable[[], Coroutine[Any, Any, T]], timeout: float) -> T:
    """Run a coroutine on a fresh event loop in a thread, so sync code can call async
    clients whether or not the calling thread already runs a loop."""
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            result.append(asyncio.run(factory()))
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=target, name="realtime-servers-probe", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError("probe did not finish")
    if error:
        raise error[0]
    return result[0]


async def _kafka_produce_once(bootstrap: str, request_timeout: float) -> bool:
    aiokafka = importlib.import_module("aiokafka")
    producer = aiokafka.AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        request_timeout_ms=int(request_timeout * 1000),
        acks="all",
    )
    try:
        await producer.start()  # a metadata request
        # An acknowledged write: the controller is up and elected a partition leader.
        async with asyncio.timeout(request_timeout):
            await producer.send_and_wait("__realtime_ready", b"ping")
        return True
    finally:
        await producer.stop()


def kafka_ready(bootstrap: str, timeout: float = 10.0) -> bool:
    """A metadata request and an acknowledged produce both succeed."""
    return _run_in_thread(lambda: _kafka_produce_once(bootstrap, timeout), timeout + 5)


class KafkaServer(Service):
    name = "kafka"

    def __init__(self, kind: Kind, bootstrap: str) -> None:
        super().__init__(kind)
        self.bootstrap = bootstrap
        self.host, self.port = _parse_hostport(bootstrap.split(",")[0], 9092)
        self._formatted = False
        self._format: _Proc | None = None

    def _start_native(self) -> None:
        if not self._formatted:
            assert self._format is not None
            self._format.start()
            if not self._format.wait(START_TIMEOUT) or self._format.returncode() != 0:
                self._format.stop()
                raise self._format.failure("kafka StorageTool format failed")
            self._formatted = True
        super()._start_native()

    def _wait_ready(self, deadline: float) -> None:
        def ready() -> bool:
            if not port_open(self.host, self.port):
                return False
            return kafka_ready(
                self.bootstrap, timeout=max(1.0, min(10.0, deadline - time.monotonic()))
            )

        _poll(ready, deadline, "kafka", self._check_alive)


def _kafka_cluster_id() -> str:
    # Kafka's Uuid text form: 16 random bytes, base64url without padding.
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()


def kafka_server() -> KafkaServer:
    """A running single-node Kafka 4 (KRaft): ``.bootstrap`` ("127.0.0.1:PORT"), ``.stop()``,
    ``.start()``, ``.restart()``. A restart keeps the ports and the log dir (data kept)."""
    given = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if given:
        return KafkaServer("env", given)
    if importlib.util.find_spec("aiokafka") is None:
        # Readiness is a real produce through aiokafka; without it every poll would fail
        # the same way until the start timeout.
        raise ServiceError("aiokafka is needed to start Kafka for tests: pip install aiokafka")
    port = free_port()
    kind = _backend()
    server = KafkaServer(kind, f"{LOCALHOST}:{port}")
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "PLAINTEXT",
        "advertised.listeners": f"PLAINTEXT://{LOCALHOST}:{port}",
        "num.partitions": "1",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        # Consumers in tests join alone; the default 3 s delay only slows them down.
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "true",
    }
    if kind == "docker":
        # The container listens on the same port number as the host, so the advertised
        # address is right on both sides of the port mapping.
        env = {"KAFKA_" + key.upper().replace(".", "_"): value for key, value in settings.items()}
        env["KAFKA_LISTENERS"] = f"PLAINTEXT://0.0.0.0:{port},CONTROLLER://localhost:9093"
        env["KAFKA_CONTROLLER_QUORUM_VOTERS"] = "1@localhost:9093"
        server._container = _Container(KAFKA_IMAGE, ports={port: port}, env=env)
        return server._launch()

    libs = kafka_libs_dir()
    if not any(libs.glob("kafka_2.13-*.jar")):
        server.close()
        raise ServiceError(f"no Kafka jars in {libs}; run scripts/install-services kafka")
    java = _which("java", "install a Java 17+ runtime")
    controller = free_port()
    tmp = server.tmp
    settings |= {
        "listeners": f"PLAINTEXT://{LOCALHOST}:{port},CONTROLLER://{LOCALHOST}:{controller}",
        "controller.quorum.voters": f"1@{LOCALHOST}:{controller}",
        "log.dirs": str(tmp / "data"),
    }
    props = tmp / "server.properties"
    props.write_text("".join(f"{key}={value}\n" for key, value in settings.items()))
    log4j = tmp / "log4j2.properties"
    log4j.write_text(
        "rootLogger.level=INFO\n"
        "rootLogger.appenderRef.stdout.ref=STDOUT\n"
        "appender.stdout.type=Console\n"
        "appender.stdout.name=STDOUT\n"
        "appender.stdout.layout.type=PatternLayout\n"
        "appender.stdout.layout.pattern=[%d] %p %m (%c)%n\n"
        # The request log and the state-change log are too chatty for a test log.
        "logger.state.name=state.change.logger\n"
        "logger.state.level=WARN\n"
    )
    jvm = [
        java,
        "-Xms128m",
        "-Xmx512m",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={log4j}",
        "-cp",
        f"{libs}/*",
    ]
    server._format = _Proc(
        [*jvm, "kafka.tools.StorageTool", "format", "-t", _kafka_cluster_id(), "-c", str(props)],
        tmp / "format.log",
        cwd=tmp,
    )
    server._procs.append(_Proc([*jvm, "kafka.Kafka", str(props)], tmp / "kafka.log", cwd=tmp))
    return server._launch()


__all__ = [
    "KafkaServer",
    "RabbitMQServer",
    "RedisCluster",
    "RedisSentinelSetup",
    "RedisServer",
    "RestartUnsupported",
    "Service",
    "ServiceError",
    "amqp_login_works",
    "free_port",
    "kafka_libs_dir",
    "kafka_ready",
    "kafka_server",
    "port_open",
    "rabbitmq_server",
    "redis_cluster",
    "redis_sentinel_setup",
    "redis_server",
    "wait_until",
    "wait_until_async",
]
