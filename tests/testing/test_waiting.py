"""realtime.testing.waiting: the one wait_until (sync and async) and the port helpers."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator

import pytest

from realtime.testing.waiting import free_port, port_open, wait_until, wait_until_async


def attempts(*outcomes: object) -> Callable[[], object]:
    """A predicate that returns (or raises, for exceptions) each outcome in turn."""
    it: Iterator[object] = iter(outcomes)

    def predicate() -> object:
        outcome = next(it)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    return predicate


async def _awaited(value: object) -> object:
    if isinstance(value, BaseException):
        raise value
    return value


def async_attempts(*outcomes: object) -> Callable[[], object]:
    it: Iterator[object] = iter(outcomes)
    return lambda: _awaited(next(it))


def test_returns_the_first_truthy_value() -> None:
    assert wait_until(attempts(0, None, "", "ready"), timeout=1, interval=0.001) == "ready"


def test_listed_exceptions_count_as_not_yet() -> None:
    predicate = attempts(ConnectionError("a"), ConnectionRefusedError("b"), 7)
    assert wait_until(predicate, timeout=1, interval=0.001, ignore=(ConnectionError,)) == 7


def test_timeout_chains_the_last_ignored_exception_and_names_the_condition() -> None:
    errors = iter(range(10_000))

    def broken() -> bool:
        raise ConnectionError(f"attempt {next(errors)}")

    with pytest.raises(TimeoutError, match="the server answering") as info:
        wait_until(
            broken, timeout=0.05, interval=0.01, ignore=(OSError,), message="the server answering"
        )
    cause = info.value.__cause__
    assert isinstance(cause, ConnectionError)
    # The last attempt's error, not the first one's.
    assert str(cause) != "attempt 0"


def test_timeout_without_an_error_has_no_cause() -> None:
    began = time.monotonic()
    with pytest.raises(TimeoutError) as info:
        wait_until(lambda: False, timeout=0.1, interval=0.01)
    assert time.monotonic() - began >= 0.1
    assert info.value.__cause__ is None


def test_other_exceptions_are_raised_at_once() -> None:
    calls: list[int] = []

    def broken() -> bool:
        calls.append(1)
        raise KeyError("not a connection problem")

    with pytest.raises(KeyError):
        wait_until(broken, timeout=5, interval=0.001, ignore=(ConnectionError,))
    assert calls == [1]


async def test_async_returns_the_first_truthy_awaited_value() -> None:
    predicate = async_attempts(None, 0, {"ok": 1})
    assert await wait_until_async(predicate, timeout=1, interval=0.001) == {"ok": 1}


async def test_async_accepts_a_plain_predicate() -> None:
    assert await wait_until_async(attempts(False, "yes"), timeout=1, interval=0.001) == "yes"


async def test_async_ignores_listed_and_chains_the_last_on_timeout() -> None:
    async def broken() -> bool:
        raise ConnectionResetError("reset")

    with pytest.raises(TimeoutError) as info:
        await wait_until_async(broken, timeout=0.05, interval=0.01, ignore=(ConnectionError,))
    assert isinstance(info.value.__cause__, ConnectionResetError)

    predicate = async_attempts(ConnectionResetError("reset"), "up")
    assert await wait_until_async(predicate, timeout=1, interval=0.001, ignore=(OSError,)) == "up"


async def test_async_raises_other_exceptions_at_once() -> None:
    predicate = async_attempts(ValueError("bad"), "never reached")
    with pytest.raises(ValueError, match="bad"):
        await wait_until_async(predicate, timeout=5, interval=0.001, ignore=(OSError,))


def test_free_port_is_bindable() -> None:
    port = free_port()
    assert 0 < port < 65536
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_port_open_sees_a_listener_and_its_absence() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert port_open("127.0.0.1", port)
    assert not port_open("127.0.0.1", port)
