"""What every group of contract cases shares: the hooks a backend fills in, the fixtures, the
inbox that records deliveries."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, ClassVar

import pytest
import pytest_asyncio

from realtime.brokers.base import MAX_MESSAGE_BYTES, Broker, PipelinedBroker
from realtime.config import OPTIONS
from realtime.testing.waiting import wait_until_async
from realtime.wire.messages import Kind


class Inbox:
    """A ``deliver`` callback that records what arrives and lets a test wait for it."""

    def __init__(self) -> None:
        self.items: list[tuple[Kind, str, bytes]] = []

    async def __call__(self, kind: Kind, channel: str, data: bytes) -> None:
        self.items.append((kind, channel, data))

    def on(self, kind: Kind, channel: str) -> list[bytes]:
        return [data for k, c, data in self.items if (k, c) == (kind, channel)]

    async def arrived(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``predicate`` holds or ``timeout`` passes; say which."""
        try:
            await wait_until_async(predicate, timeout, interval=0.01)
        except TimeoutError:
            return False
        return True

    async def wait_for(
        self, predicate: Callable[[], bool], timeout: float, what: str = "messages"
    ) -> None:
        if not await self.arrived(predicate, timeout):
            shown = [(k, c, d[:40]) for k, c, d in self.items[:20]]
            raise AssertionError(f"{what} did not arrive within {timeout}s; got {shown!r}")


class ContractBase:
    """Semantics every broker gives. Override :meth:`make_broker`; the rest is inherited."""

    #: Seconds to wait for a message that must arrive (generous: CI machines are slow).
    timeout: ClassVar[float] = 15.0
    #: Seconds the restart cases allow for the broker to come back.
    recovery_timeout: ClassVar[float] = 60.0
    #: Largest payload the backend must carry byte-exact: what the gateway may hand it.
    max_payload: ClassVar[int] = MAX_MESSAGE_BYTES
    #: The gateway's default bound on ``start()`` (``START_TIMEOUT_SECONDS``).
    start_timeout: ClassVar[float] = float(
        next(o.default for o in OPTIONS if o.name == "START_TIMEOUT_SECONDS") or 30
    )
    #: What the entry point names (``from_settings(settings)`` builds the broker).
    plugin: ClassVar[Any] = None
    #: Variables ``from_settings`` accepts (besides the gateway's own defaults).
    good_settings: ClassVar[Mapping[str, str]] = {}
    #: For each of your variables, variables that make it bad.
    bad_settings: ClassVar[Mapping[str, Mapping[str, str]]] = {}

    async def make_broker(self) -> Broker:
        raise NotImplementedError("a BrokerContract subclass builds its broker here")

    async def make_unreachable_broker(self) -> Broker:
        pytest.skip("this backend's test gives no make_unreachable_broker()")

    async def stop_server(self) -> None:
        pytest.skip("this backend's test does not stop its server")

    async def start_server(self) -> None:
        pytest.skip("this backend's test does not start its server")

    # --- fixtures -------------------------------------------------------------------------------

    @pytest_asyncio.fixture
    async def started(self) -> AsyncIterator[Callable[[], Awaitable[tuple[Broker, Inbox]]]]:
        """A factory of started brokers, each with its inbox; all closed after the test."""
        made: list[Broker] = []

        async def start() -> tuple[Broker, Inbox]:
            broker = await self.make_broker()
            inbox = Inbox()
            made.append(broker)
            await broker.start(inbox)
            await self._until(lambda: broker.ready, self.timeout, "broker ready after start")
            return broker, inbox

        yield start
        for broker in made:
            await broker.close()

    @pytest.fixture
    def channel(self) -> str:
        return f"contract-{uuid.uuid4().hex[:12]}"

    def _pipelined(self, broker: Broker) -> PipelinedBroker:
        if not isinstance(broker, PipelinedBroker):
            pytest.skip(f"{type(broker).__name__} is no PipelinedBroker (no publish_later)")
        return broker

    async def _until(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        await wait_until_async(predicate, timeout, message=what)

    # --- delivery -------------------------------------------------------------------------------
