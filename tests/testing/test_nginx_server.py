"""realtime.testing.services.nginx_server: Debian's nginx as the current user, on a free port,
in a directory of its own."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pytest

from realtime.testing.services import ServiceError, nginx_server
from realtime.testing.services.nginx import Site
from realtime.testing.waiting import port_open, wait_until

pytestmark = pytest.mark.integration


def answering(text: str) -> Site:
    def site(port: int) -> str:
        return f"server {{ listen 127.0.0.1:{port}; location / {{ return 200 '{text}'; }} }}\n"

    return site


def workers_of(master: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == master:
            found.append(int(stat.parent.name))
    return found


def test_serves_its_site_restarts_on_its_port_reloads_and_cleans_up() -> None:
    with nginx_server(answering("one")) as lb:
        assert lb.kind == "native" and lb.alive()
        assert httpx.get(lb.url + "/x").text == "one"
        tmp = lb.tmp
        # Nothing of the system's nginx: pid, logs and temporary files are ours.
        assert (tmp / "nginx.pid").exists() and lb.access_log.exists()
        assert any('"GET /x HTTP/1.1" 200' in line for line in lb.access_lines())
        # Its worker runs as the test's user, not `nobody` (which could not use the 0700
        # temporary directory) nor any user of the system's nginx.
        master = int((tmp / "nginx.pid").read_text())
        workers = workers_of(master)
        assert workers, "nginx has a worker process"
        assert {os.stat(f"/proc/{pid}").st_uid for pid in workers} == {os.geteuid()}
        lb.restart()
        assert httpx.get(lb.url + "/x").text == "one"
        lb.write_site(answering("two"))
        lb.reload()

        def reloaded() -> bool:
            return httpx.get(lb.url + "/x").text == "two"

        wait_until(reloaded, 5, message="the reloaded site")
    assert not port_open(lb.host, lb.port)
    assert not tmp.exists()


def test_a_bad_configuration_fails_at_once_with_nginx_s_message() -> None:
    began = time.monotonic()
    with pytest.raises(ServiceError, match="unknown directive"):
        nginx_server(lambda port: "no_such_directive on;\n")
    assert time.monotonic() - began < 10


def test_ready_while_what_it_proxies_to_is_down() -> None:
    # The readiness probe is a server of the launcher's own, so a site whose upstreams do not
    # listen yet (a balancer started before its gateways) is ready, and answers 502 itself.
    def down(port: int) -> str:
        proxy = "location / { proxy_pass http://127.0.0.1:9; }"
        return f"server {{ listen 127.0.0.1:{port}; {proxy} }}\n"

    with nginx_server(down) as lb:
        assert httpx.get(lb.url + "/").status_code == 502
