"""Any native server binary on a free port of 127.0.0.1, for a plugin's tests.

:func:`native_server` is the short way to what the Redis, Kafka and RabbitMQ launchers do by
subclassing :class:`~realtime.testing.services.Service`: one process in its own process group,
its output in a log inside a temporary directory, a readiness probe polled with a deadline, and
``stop()``/``start()``/``restart()``/``kill()``/``close()`` with cleanup at interpreter exit::

    server = native_server(
        "nats",
        lambda port, tmp: ["nats-server", "-a", "127.0.0.1", "-p", str(port)],
    )
    with server:
        url = f"nats://{server.host}:{server.port}"
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from realtime.testing.services.base import Address, Service
from realtime.testing.services.processes import Process
from realtime.testing.waiting import LOCALHOST, free_port, port_open

Argv = Callable[[int, Path], Sequence[str]]
Probe = Callable[[str, int], object]


class NativeServer(Service):
    """A server binary started by :func:`native_server`; ``.host``, ``.port``, ``.address``,
    ``.tmp`` (its working directory, holding ``<name>.log``)."""

    def __init__(
        self,
        name: str,
        argv: Argv,
        *,
        ready: Probe | None = None,
        env: Mapping[str, str] | None = None,
        not_ready: tuple[type[BaseException], ...] = (OSError, TimeoutError),
    ) -> None:
        # Set on the instance before Service.__init__ names the temporary directory after it.
        self.name = name  # type: ignore[misc]
        self.not_ready = not_ready  # type: ignore[misc]
        super().__init__("native")
        self.host = LOCALHOST
        self.port = free_port()
        self._argv = argv
        self._ready = ready or port_open
        self._env = dict(env) if env is not None else None

    @property
    def address(self) -> Address:
        return (self.host, self.port)

    @property
    def log_path(self) -> Path:
        return self.tmp / f"{self.name}.log"

    def _prepare_native(self) -> None:
        argv = [str(arg) for arg in self._argv(self.port, self.tmp)]
        self.add_process(Process(argv, self.log_path, env=self._env, cwd=self.tmp))

    def _wait_ready(self, deadline: float) -> None:
        def probe() -> object:
            # A probe returning a false value means "not yet", like one that raises not_ready.
            if not self._ready(self.host, self.port):
                raise OSError(f"{self.name} not answering on {self.host}:{self.port}")
            return True

        self.wait_for(probe, deadline, f"{self.name} ready on {self.host}:{self.port}")


def native_server(
    name: str,
    argv: Argv,
    *,
    ready: Probe | None = None,
    env: Mapping[str, str] | None = None,
    not_ready: tuple[type[BaseException], ...] = (OSError, TimeoutError),
) -> NativeServer:
    """Start ``argv(port, tmp)`` on a free port and return once ``ready(host, port)`` is true
    (default: the port accepts TCP connections), within ``START_TIMEOUT``.

    ``tmp`` is a new directory for its data and configuration, removed at close. The probe may
    raise one of ``not_ready`` while the server comes up; a process that exits fails the start
    at once with :class:`ServiceError` and the end of its log. A restart keeps the port.
    """
    server = NativeServer(name, argv, ready=ready, env=env, not_ready=not_ready)
    return server.launch()
