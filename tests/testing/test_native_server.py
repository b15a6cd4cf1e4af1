"""realtime.testing.services.native_server: any binary on a free port, with the plumbing
the Redis, Kafka and RabbitMQ launchers share."""

from __future__ import annotations

import sys
import time

import pytest
import redis.exceptions

from realtime.testing.services import ServiceError, native_server, redis_pings
from realtime.testing.waiting import port_open


def http_server(port: int, tmp: object) -> list[str]:
    # Python's own HTTP server: a real server binary that every machine running these has.
    return [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]


def test_starts_on_a_free_port_restarts_on_it_and_cleans_up() -> None:
    with native_server("http", http_server) as server:
        assert server.kind == "native" and server.alive()
        assert port_open(server.host, server.port)
        tmp = server.tmp
        assert tmp.is_dir() and server.log_path.parent == tmp
        server.stop()
        assert not port_open(server.host, server.port)
        server.start()
        assert port_open(*server.address)
    assert not port_open(server.host, server.port)
    assert not tmp.exists()


def test_a_server_that_exits_fails_at_once_with_its_log() -> None:
    def broken(port: int, tmp: object) -> list[str]:
        return [sys.executable, "-c", "print('bad configuration line 3'); raise SystemExit(3)"]

    began = time.monotonic()
    with pytest.raises(ServiceError) as info:
        native_server("broken", broken)
    # The process died: no waiting for the start timeout.
    assert time.monotonic() - began < 20
    assert "bad configuration line 3" in str(info.value)
    assert "exited with code 3" in str(info.value)


def test_a_probe_returning_false_means_not_yet() -> None:
    calls: list[int] = []

    def third_time(host: str, port: int) -> bool:
        calls.append(port)
        return len(calls) >= 3 and port_open(host, port)

    with native_server("http", http_server, ready=third_time) as server:
        assert len(calls) >= 3 and calls[-1] == server.port


@pytest.mark.integration
def test_a_real_mq_binary_with_its_client_library_as_probe() -> None:
    # What a plugin author writes for their MQ's server; Redis stands in for it here.
    def redis_argv(port: int, tmp: object) -> list[str]:
        return ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]

    not_ready = (OSError, redis.exceptions.RedisError)  # what the probe raises while it starts
    with native_server("redis", redis_argv, ready=redis_pings, not_ready=not_ready) as server:
        assert redis_pings(server.host, server.port)
        server.restart()
        assert redis_pings(server.host, server.port)
