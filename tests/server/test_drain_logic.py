"""The drain's schedule and its settings, without a server."""

from __future__ import annotations

import asyncio
import time

import pytest

from realtime.config import load_settings
from realtime.errors import ConfigError
from realtime.server.drain import Drain


class Peer:
    def __init__(self, drain: Drain) -> None:
        self.drain = drain
        self.closed: tuple[float, int] | None = None

    def close(self, code: int, reason: str) -> None:
        self.closed = (time.monotonic(), code)
        self.drain.discard(self)  # as the endpoint does once the teardown is over


async def test_closes_spread_evenly_after_turning_red() -> None:
    drain = Drain(1.0)
    peers = [Peer(drain) for _ in range(40)]
    for peer in peers:
        drain.add(peer)
    began = time.monotonic()
    await drain.run()
    took = time.monotonic() - began
    assert drain.draining
    times = sorted(p.closed[0] - began for p in peers if p.closed)
    assert len(times) == 40 and {p.closed[1] for p in peers if p.closed} == {1012}
    assert times[0] >= 0.02  # none in the first instant: /readyz is red before anyone leaves
    assert 0.9 <= times[-1] <= 1.2 and took < 1.3
    quarters = [sum(1 for t in times if q / 4 < t <= (q + 1) / 4 + 0.02) for q in range(4)]
    assert all(6 <= n <= 14 for n in quarters), quarters


async def test_nothing_open_returns_at_once() -> None:
    drain = Drain(30.0)
    await asyncio.wait_for(drain.run(), 0.5)
    assert drain.draining


async def test_zero_seconds_closes_all_together() -> None:
    drain = Drain(0.0)
    peers = [Peer(drain) for _ in range(5)]
    for peer in peers:
        drain.add(peer)
    await asyncio.wait_for(drain.run(), 0.5)
    assert all(p.closed for p in peers)


def settings(**env: str):  # type: ignore[no-untyped-def]
    return load_settings(env, env_file=None)


def test_defaults() -> None:
    s = settings()
    assert s.shutdown_drain_seconds == 5
    assert s.trusted_proxies == ("127.0.0.1", "::1")
    assert s.ws_max_connection_age is None
    assert s.http_access_log is False


def test_trusted_proxies_forms() -> None:
    assert settings(TRUSTED_PROXIES="*").trusted_proxies == ("*",)
    assert settings(TRUSTED_PROXIES="none").trusted_proxies == ()
    assert settings(TRUSTED_PROXIES="10.0.0.0/8, 192.0.2.1").trusted_proxies == (
        "10.0.0.0/8",
        "192.0.2.1",
    )
    # uvicorn's own variable, from before the setting existed, is still honoured...
    assert settings(FORWARDED_ALLOW_IPS="10.1.0.0/16").trusted_proxies == ("10.1.0.0/16",)
    # ...unless ours is set.
    both = settings(FORWARDED_ALLOW_IPS="10.1.0.0/16", TRUSTED_PROXIES="192.0.2.1")
    assert both.trusted_proxies == ("192.0.2.1",)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TRUSTED_PROXIES", "10.0.0.1/8"),
        ("TRUSTED_PROXIES", "proxy.internal"),
        ("TRUSTED_PROXIES", ","),
        ("FORWARDED_ALLOW_IPS", "nonsense"),
        ("SHUTDOWN_DRAIN_SECONDS", "-1"),
        ("SHUTDOWN_DRAIN_SECONDS", "soon"),
        ("WS_MAX_CONNECTION_AGE_SECONDS", "-5"),
        ("HTTP_ACCESS_LOG", "maybe"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as error:
        settings(**{name: value})
    assert str(error.value).startswith(name)
