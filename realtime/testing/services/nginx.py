"""A real nginx for tests: Debian's binary run as the current user, in a directory of its own.

nginx is only useful with a configuration naming what it proxies to, so unlike Redis there is
no server "given by an environment variable": ``NGINX_BINARY`` picks another binary (a newer
nginx, an OpenResty), and the launcher always runs it itself, natively (no Docker: a
container's nginx could not reach gateways on the host's 127.0.0.1).

The caller gives the contents of nginx's ``http { }`` block for a listen port; the launcher
wraps it in a main configuration of its own: ``daemon off``, one worker, pid file, error and
access logs and every temporary path under :attr:`NginxServer.tmp`, so nothing of the system's
nginx (``/etc/nginx``, ``/var/lib/nginx``, ``/run/nginx.pid``) is read or written and no
privilege is needed beyond installing the package (scripts/install-services nginx).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from realtime.testing.services.base import Address, Service
from realtime.testing.services.processes import Process, ServiceError, tail
from realtime.testing.waiting import LOCALHOST, free_port

# The http block's contents for the port nginx listens on (127.0.0.1:port).
Site = Callable[[int], str]

# Debian installs nginx in /usr/sbin, which is not on an ordinary user's PATH.
_SBIN = "/usr/sbin/nginx"
# A server the launcher adds to every configuration, reached by its Host name only (the
# site's own server stays the port's default): readiness, and proof that the nginx answering
# is the one started here with this configuration, not a stray server on the port.
PROBE_HOST = "realtime-testing-probe"
# The access log's format: what the drill reads to see which instance served what.
LOG_FORMAT = '$remote_addr "$request" $status upstream=$upstream_addr'


def nginx_binary() -> str:
    explicit = os.environ.get("NGINX_BINARY")
    if explicit:
        return explicit
    found = shutil.which("nginx") or (_SBIN if os.access(_SBIN, os.X_OK) else None)
    if found is None:
        raise ServiceError(
            "nginx not found on PATH or in /usr/sbin; run scripts/install-services nginx"
        )
    return found


def _user_line() -> str:
    # As root, nginx's workers would switch to `nobody` and lose access to the temporary
    # directory (mode 0700); as anyone else the directive is ignored with a warning.
    if os.geteuid() != 0:
        return ""
    import grp
    import pwd

    user = pwd.getpwuid(os.geteuid()).pw_name
    group = grp.getgrgid(os.getegid()).gr_name
    return f"user {user} {group};\n"


class NginxServer(Service):
    """``.host``, ``.port``, ``.url`` (``http://127.0.0.1:PORT``), ``.access_log`` and
    ``.error_log`` (paths), ``.reload()`` after :meth:`write_site`; a restart keeps the port."""

    name = "nginx"
    not_ready = (OSError, TimeoutError, urllib.error.URLError)

    def __init__(self, site: Site) -> None:
        super().__init__("native")
        self.host = LOCALHOST
        self.port = free_port()
        self._site = site

    @property
    def address(self) -> Address:
        return (self.host, self.port)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def access_log(self) -> Path:
        return self.tmp / "access.log"

    @property
    def error_log(self) -> Path:
        return self.tmp / "error.log"

    @property
    def conf_path(self) -> Path:
        return self.tmp / "nginx.conf"

    def access_lines(self) -> list[str]:
        try:
            return self.access_log.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []

    def write_site(self, site: Site | None = None) -> None:
        """Write the configuration (a new ``site`` replaces the old); :meth:`reload` applies it."""
        if site is not None:
            self._site = site
        tmp = self.tmp
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (tmp / sub).mkdir(exist_ok=True)
        probe = (
            "server {\n"
            f"    listen {self.host}:{self.port};\n"
            f"    server_name {PROBE_HOST};\n"
            "    access_log off;\n"
            f"    location / {{ return 200 '{self.tmp.name}'; }}\n"
            "}\n"
        )
        self.conf_path.write_text(
            "daemon off;\n"
            "worker_processes 1;\n"
            f"{_user_line()}"
            f"pid {tmp / 'nginx.pid'};\n"
            f"error_log {self.error_log} info;\n"
            "events { worker_connections 1024; }\n"
            "http {\n"
            f"    log_format realtime_testing '{LOG_FORMAT}';\n"
            f"    access_log {self.access_log} realtime_testing;\n"
            f"    client_body_temp_path {tmp / 'body'};\n"
            f"    proxy_temp_path {tmp / 'proxy'};\n"
            f"    fastcgi_temp_path {tmp / 'fastcgi'};\n"
            f"    uwsgi_temp_path {tmp / 'uwsgi'};\n"
            f"    scgi_temp_path {tmp / 'scgi'};\n"
            f"{self._site(self.port)}\n"
            f"{probe}"
            "}\n"
        )

    def reload(self) -> None:
        """Apply a rewritten configuration (SIGHUP: new workers, open connections kept)."""
        self._controlled("reload")
        self._nginx("-s", "reload")

    def check(self) -> str:
        """``nginx -t`` on the written configuration: its output, or ServiceError."""
        return self._nginx("-t")

    def _nginx(self, *args: str) -> str:
        done = subprocess.run(
            self._argv(*args), capture_output=True, text=True, timeout=30, check=False
        )
        if done.returncode != 0:
            raise ServiceError(f"nginx {' '.join(args)} failed:\n{done.stderr}")
        return done.stderr

    def _argv(self, *extra: str) -> list[str]:
        # -e: errors before the configuration is read go to our log too, not /var/log/nginx.
        return [
            nginx_binary(),
            "-p", str(self.tmp),
            "-c", str(self.conf_path),
            "-e", str(self.error_log),
            *extra,
        ]  # fmt: skip

    def _prepare_native(self) -> None:
        self.write_site()
        self.add_process(Process(self._argv(), self.tmp / "nginx.log", cwd=self.tmp))

    def _wait_ready(self, deadline: float) -> None:
        def probe() -> bool:
            request = urllib.request.Request(self.url + "/", headers={"Host": PROBE_HOST})
            # No proxy from the environment: this is a loopback server of ours.
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            with opener.open(request, timeout=1) as answer:
                body: bytes = answer.read()
            if body.decode() != self.tmp.name:
                raise ServiceError(f"another server answers on {self.host}:{self.port}")
            return True

        self.wait_for(probe, deadline, f"nginx answering on {self.host}:{self.port}")

    def _logs(self) -> str:
        return f"{super()._logs()}\n{self.error_log}:\n{tail(self.error_log)}"


def nginx_server(site: Site) -> NginxServer:
    """A running nginx on a free port of 127.0.0.1 serving ``site(port)`` inside its
    ``http { }`` block (which must ``listen 127.0.0.1:port``), ready when it answers."""
    return NginxServer(site).launch()
