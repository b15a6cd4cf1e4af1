"""A real RabbitMQ for integration tests: this plugin's own launcher.

Built on :mod:`realtime.testing.services` and resolved the same way: ``RABBITMQ_URL`` if set
(then it cannot be restarted), else a container when a Docker engine answers, else Debian's
``rabbitmq-server`` run as our own process with its own node name, cookie, ports and epmd.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import aio_pika
import aiormq.exceptions

from realtime.testing.services import (
    LOCALHOST,
    STOP_TIMEOUT,
    Container,
    Origin,
    Process,
    RestartUnsupported,
    Service,
    backend,
    run_sync,
    which,
)
from realtime.testing.waiting import free_port

RABBITMQ_IMAGE = "rabbitmq:3.13"

log = logging.getLogger("realtime_rabbitmq.testing")


async def _login(url: str, connect_timeout: float) -> bool:
    connection = await aio_pika.connect(url, timeout=connect_timeout)
    await connection.close()
    return True


def login_works(url: str, timeout: float = 3.0) -> bool:
    """An AMQP connection opens with the URL's credentials: the broker is up and the login
    is accepted. Works with or without a running event loop (the client runs in a thread)."""
    return run_sync(lambda: _login(url, timeout), timeout + 5)


def _rabbitmq_scripts() -> Path:
    # On Debian /usr/sbin/rabbitmq-server is a wrapper that switches to the rabbitmq user
    # and writes to /var/log; the real scripts live here and run as any user.
    debian = Path("/usr/lib/rabbitmq/bin")
    if (debian / "rabbitmq-server").exists():
        return debian
    found = which("rabbitmq-server", "run scripts/install-services rabbitmq")
    return Path(os.path.realpath(found)).parent


class RabbitMQServer(Service):
    """``.url`` (amqp://guest:guest@127.0.0.1:PORT/), ``.host``, ``.port``; natively also
    ``.nodename`` and :meth:`ctl` (rabbitmqctl against this node)."""

    name = "rabbitmq"
    not_ready = (OSError, TimeoutError, aiormq.exceptions.AMQPError)

    def __init__(self, kind: Origin, url: str, *, container: Container | None = None) -> None:
        super().__init__(kind, container=container)
        parts = urlsplit(url)
        self.url = url
        self.host = parts.hostname or LOCALHOST
        self.port = parts.port or 5672
        self.nodename = ""
        self._env: dict[str, str] = {}
        self._scripts = Path()

    def ctl(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[bytes]:
        """Run ``rabbitmqctl -n NODE ARGS`` against the native node."""
        assert self.kind == "native", "rabbitmqctl needs the node we started"
        return subprocess.run(
            [str(self._scripts / "rabbitmqctl"), "-n", self.nodename, *args],
            env=self._env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
        )

    def _prepare_native(self) -> None:
        tmp, port = self.tmp, self.port
        home = tmp / "home"
        home.mkdir()
        # Erlang reads the cookie from $HOME; our own HOME gives the node and rabbitmqctl the
        # same cookie whoever runs the tests (root's HOME, the rabbitmq user's, a CI user's).
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
        self.nodename = f"rmqtest-{os.getpid()}-{port}@localhost"
        self._scripts = _rabbitmq_scripts()
        env = {
            **os.environ,
            "HOME": str(home),
            "RABBITMQ_NODENAME": self.nodename,
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
            env.pop(var, None)
        self._env = env
        argv = [str(self._scripts / "rabbitmq-server")]
        self.add_process(Process(argv, tmp / "rabbitmq.log", env=env, cwd=tmp))

    def _stop_native(self) -> None:
        if any(p.alive() for p in self.processes):
            # A clean stop lets the node flush Mnesia, so the next start is not a recovery.
            try:
                done = self.ctl("stop", timeout=STOP_TIMEOUT)
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
        self.wait_for(lambda: login_works(self.url), deadline, "rabbitmq accepting a login")


def rabbitmq_server() -> RabbitMQServer:
    """A running RabbitMQ: ``.url`` (amqp://guest:guest@127.0.0.1:PORT/), ``.stop()``,
    ``.start()``, ``.restart()``. A restart keeps durable queues and messages."""
    given = os.environ.get("RABBITMQ_URL")
    if given:
        return RabbitMQServer("env", given)
    port = free_port()
    url = f"amqp://guest:guest@{LOCALHOST}:{port}/"
    if backend() == "docker":
        container = Container(RABBITMQ_IMAGE, ports={5672: port})
        return RabbitMQServer("docker", url, container=container).launch()
    return RabbitMQServer("native", url).launch()


__all__ = ["RabbitMQServer", "RestartUnsupported", "login_works", "rabbitmq_server"]
