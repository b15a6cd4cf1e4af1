"""Real Redis servers for tests: standalone, Sentinel and Cluster, probed with redis-py."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import redis
import redis.exceptions
from redis.backoff import NoBackoff
from redis.retry import Retry

from realtime.testing.services.base import (
    Address,
    Origin,
    Service,
    backend,
    parse_hostport,
    which,
)
from realtime.testing.services.processes import Container, Process, ServiceError
from realtime.testing.waiting import LOCALHOST, free_port

REDIS_IMAGE = "redis:7"


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
        args: tuple[str, ...] = (),
    ) -> None:
        super().__init__(kind, container=container)
        self.host = host
        self.port = port
        self.db = db
        self.args = args

    def _prepare_native(self) -> None:
        argv = _redis_argv(self.port, self.tmp, *self.args)
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


def native_redis(*args: str) -> RedisServer:
    """A standalone redis-server process on a free port, whatever the backend; ``args`` are
    extra redis-server options (``"--replicaof", host, port``; ``"--enable-debug-command",
    "local"``)."""
    return RedisServer("native", LOCALHOST, free_port(), args=args).launch()


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
