"""Waiting on a condition with a deadline, and finding a free port: the one copy of each.

``wait_until`` and ``wait_until_async`` share one :class:`Poll`: the deadline, the exceptions
that count as "not yet", and the ``TimeoutError`` that names what never happened.
"""

from __future__ import annotations

import asyncio
import inspect
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar, cast, overload

T = TypeVar("T")
LOCALHOST = "127.0.0.1"


class Poll(Generic[T]):
    """One wait: call :meth:`settled` with each attempt's outcome until it returns true."""

    def __init__(
        self,
        timeout: float,
        interval: float,
        ignore: tuple[type[BaseException], ...],
        message: str,
    ) -> None:
        self.timeout = timeout
        self.interval = interval
        self.ignore = ignore
        self.message = message
        self.deadline = time.monotonic() + timeout
        self.result: T | None = None
        self._last: BaseException | None = None

    def settled(self, result: T | None, error: BaseException | None = None) -> bool:
        """Record one attempt; true when it succeeded, TimeoutError once the time is up."""
        if error is not None:
            if not isinstance(error, self.ignore):
                raise error
            self._last = error
        elif result:
            self.result = result
            return True
        if time.monotonic() >= self.deadline:
            raise TimeoutError(f"{self.message} not met within {self.timeout:.1f}s") from self._last
        return False


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.05,
    *,
    ignore: tuple[type[BaseException], ...] = (),
    message: str = "condition",
) -> T:
    """Call ``predicate`` until it returns something truthy, and return that.

    Exceptions of the ``ignore`` types count as "not yet"; the last one is chained to the
    ``TimeoutError`` raised when ``timeout`` seconds pass.
    """
    poll: Poll[T] = Poll(timeout, interval, ignore, message)
    while True:
        try:
            result = predicate()
        except Exception as exc:
            done = poll.settled(None, exc)
        else:
            done = poll.settled(result)
        if done:
            return cast(T, poll.result)
        time.sleep(interval)


@overload
async def wait_until_async(
    predicate: Callable[[], Awaitable[T]],
    timeout: float = ...,
    interval: float = ...,
    *,
    ignore: tuple[type[BaseException], ...] = ...,
    message: str = ...,
) -> T: ...


@overload
async def wait_until_async(
    predicate: Callable[[], T],
    timeout: float = ...,
    interval: float = ...,
    *,
    ignore: tuple[type[BaseException], ...] = ...,
    message: str = ...,
) -> T: ...


async def wait_until_async(
    predicate: Callable[[], Awaitable[T] | T],
    timeout: float = 10.0,
    interval: float = 0.05,
    *,
    ignore: tuple[type[BaseException], ...] = (),
    message: str = "condition",
) -> T:
    """:func:`wait_until` for async code: ``predicate`` may return a value or an awaitable."""
    poll: Poll[T] = Poll(timeout, interval, ignore, message)
    while True:
        try:
            outcome = predicate()
            result: T = await outcome if inspect.isawaitable(outcome) else outcome
        except Exception as exc:
            done = poll.settled(None, exc)
        else:
            done = poll.settled(result)
        if done:
            return cast(T, poll.result)
        await asyncio.sleep(interval)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
