"""The broker contract: one suite every backend runs against itself, ours or a third party's.

Subclass :class:`BrokerContract` in a test module, tell it how to build a broker against your
real server, and optionally how to stop and start that server::

    from realtime.testing import BrokerContract

    class TestMyBroker(BrokerContract):
        async def make_broker(self) -> Broker:
            return MyBroker(url=MY_SERVER_URL)

        async def stop_server(self) -> None:   # optional: enables the restart cases
            ...

        async def start_server(self) -> None:
            ...

Optional hooks and attributes widen it (each case that needs one is skipped, saying which,
without it):

- ``make_unreachable_broker()``: a broker pointed at an address where nothing listens. Its
  ``start()`` must return within :attr:`start_timeout` (not ready) or raise ``BrokerError``;
- ``plugin`` (what your entry point names), ``good_settings`` (variables ``from_settings``
  accepts) and ``bad_settings`` (variable -> variables making that one bad): ``from_settings``
  builds a broker from the first, raises ``ConfigError`` naming the variable for each of the
  others.

Each test builds its brokers fresh, as separate gateway instances would. The pipelined-publish
cases run when the broker is a :class:`realtime.brokers.base.PipelinedBroker` and are skipped,
with the reason, when it is not. The suite needs
pytest and pytest-asyncio; its tests and fixtures are marked so that pytest-asyncio's strict
mode runs them too.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import uuid
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, ClassVar

import pytest
import pytest_asyncio

from realtime.brokers.base import MAX_MESSAGE_BYTES, Broker, PipelinedBroker
from realtime.config import OPTIONS, load_settings
from realtime.errors import BrokerError, ConfigError
from realtime.testing.waiting import wait_until_async
from realtime.wire.messages import Kind

__all__ = ["BrokerContract", "Inbox"]


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


class BrokerContract:
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

    @pytest.mark.asyncio
    async def test_every_instance_receives_every_message(self, started, channel) -> None:  # type: ignore[no-untyped-def]
        (a, inbox_a), (b, inbox_b), (c, _) = [await started() for _ in range(3)]
        await a.subscribe("broadcast", channel)
        await b.subscribe("broadcast", channel)
        # c publishes without subscribing, as a gateway serving only the HTTP API does.
        for i in range(20):
            await c.publish("broadcast", channel, b"m%d" % i)
        expected = [b"m%d" % i for i in range(20)]
        for inbox in (inbox_a, inbox_b):
            await inbox.wait_for(
                lambda i=inbox: len(i.on("broadcast", channel)) >= 20, self.timeout
            )
            assert inbox.on("broadcast", channel) == expected

    @pytest.mark.asyncio
    async def test_publisher_receives_its_own_message(self, started, channel) -> None:  # type: ignore[no-untyped-def]
        a, inbox = await started()
        await a.subscribe("broadcast", channel)
        await a.publish("broadcast", channel, b"echo")
        await inbox.wait_for(lambda: inbox.on("broadcast", channel) == [b"echo"], self.timeout)

    @pytest.mark.asyncio
    async def test_order_is_kept_per_channel(self, started, channel) -> None:  # type: ignore[no-untyped-def]
        (a, _), (b, inbox) = await started(), await started()
        await b.subscribe("broadcast", channel)
        await b.subscribe("broadcast", channel + "-2")
        for i in range(500):
            await a.publish("broadcast", channel, b"%d" % i)
            await a.publish("broadcast", channel + "-2", b"%d" % i)
        expected = [b"%d" % i for i in range(500)]
        await inbox.wait_for(
            lambda: (
                len(inbox.on("broadcast", channel)) >= 500
                and len(inbox.on("broadcast", channel + "-2")) >= 500
            ),
            self.timeout,
        )
        assert inbox.on("broadcast", channel) == expected
        assert inbox.on("broadcast", channel + "-2") == expected

    @pytest.mark.asyncio
    async def test_channels_and_kinds_never_mix(self, started, channel) -> None:  # type: ignore[no-untyped-def]
        (a, _), (b, inbox) = await started(), await started()
        names = [f"{channel}-{i}" for i in range(5)]
        for name in names:
            await b.subscribe("broadcast", name)
            await b.subscribe("presence", name)
        for name in names:
            await a.publish("broadcast", name, f"b:{name}".encode())
            await a.publish("presence", name, f"p:{name}".encode())
        await inbox.wait_for(lambda: len(inbox.items) >= 10, self.timeout)
        for kind, name, data in inbox.items:
            assert data == f"{kind[0]}:{name}".encode(), (kind, name, data)
        assert sorted(inbox.items) == sorted(
            [("broadcast", n, f"b:{n}".encode()) for n in names]
            + [("presence", n, f"p:{n}".encode()) for n in names]
        )

    @pytest.mark.asyncio
    async def test_channel_names_with_separators(self, started, channel) -> None:  # type: ignore[no-untyped-def]
        (a, _), (b, inbox) = await started(), await started()
        tricky = [f"{channel}.a.b", f"{channel}:x/y", f"{channel}*", f"{channel}#", f"{channel} é"]
        await b.subscribe("broadcast", tricky[0])
        for name in tricky:
            await a.publish("broadcast", name, name.encode())
        await a.publish("broadcast", f"{channel}.a.c", b"near miss")
        await a.publish("broadcast", tricky[0], b"last")
        await inbox.wait_for(lambda: b"last" in inbox.on("broadcast", tricky[0]), self.timeout)
        assert inbox.items == [
            ("broadcast", tricky[0], tricky[0].encode()),
            ("broadcast", tricky[0], b"last"),
        ]

    @pytest.mark.asyncio
    async def test_large_binary_payload_is_byte_exact(self, started, channel) -> None:  # type: ignore[no-untyped-def]
        (a, _), (b, inbox) = await started(), await started()
        await b.subscribe("broadcast", channel)
        payload = os.urandom(self.max_payload)  # not UTF-8: brokers move bytes
        await a.publish("broadcast", channel, payload)
        await inbox.wait_for(lambda: bool(inbox.on("broadcast", channel)), self.timeout)
        assert inbox.on("broadcast", channel) == [payload]

    @pytest.mark.asyncio
    async def test_payload_over_the_limit_fails_cleanly_or_arrives(self, started, channel) -> None:  # type: ignore[no-untyped-def]
        # The gateway never hands more than max_payload; a broker that gets it anyway refuses
        # with BrokerError (or carries it), and goes on carrying what follows.
        (a, _), (b, inbox) = await started(), await started()
        await b.subscribe("broadcast", channel)
        payload = os.urandom(self.max_payload + 1)
        with contextlib.suppress(BrokerError):
            await asyncio.wait_for(a.publish("broadcast", channel, payload), self.timeout)
        await a.publish("broadcast", channel, b"after")
        await inbox.wait_for(lambda: b"after" in inbox.on("broadcast", channel), self.timeout)
        assert inbox.on("broadcast", channel) in ([b"after"], [payload, b"after"])

    @pytest.mark.asyncio
    async def test_a_raising_deliver_does_not_stop_delivery(self, started, channel) -> None:  # type: ignore[no-untyped-def]
        a, _ = await started()
        inbox = Inbox()

        async def fails_on_boom(kind: Kind, name: str, data: bytes) -> None:
            await inbox(kind, name, data)
            if data.startswith(b"boom"):
                raise RuntimeError("a deliver callback failed")

        c = await self.make_broker()
        try:
            await c.start(fails_on_boom)
            await self._until(lambda: c.ready, self.timeout, "broker ready after start")
            await c.subscribe("broadcast", channel)
            for i in range(3):
                await a.publish("broadcast", channel, b"boom %d" % i)
            await a.publish("broadcast", channel, b"after")
            await inbox.wait_for(lambda: b"after" in inbox.on("broadcast", channel), self.timeout)
            assert inbox.on("broadcast", channel) == [b"boom 0", b"boom 1", b"boom 2", b"after"]
        finally:
            await c.close()

    # --- pipelined publish (PipelinedBroker only) -----------------------------------------------

    @pytest.mark.asyncio
    async def test_pipelined_publishes_resolve_and_arrive_in_order(self, started, channel) -> None:  # type: ignore[no-untyped-def]
        (a, _), (b, inbox) = await started(), await started()
        pipelined = self._pipelined(a)
        names = [channel, channel + "-2"]
        for name in names:
            await b.subscribe("broadcast", name)
        count = 1000
        resolved: list[tuple[str, int]] = []
        futures: list[asyncio.Future[None]] = []

        def record(key: tuple[str, int]) -> Callable[[asyncio.Future[None]], None]:
            return lambda _: resolved.append(key)

        # All queued before the first round trip ends, so the broker has batches to make.
        for i in range(count):
            for name in names:
                future = pipelined.publish_later("broadcast", name, b"%d" % i)
                future.add_done_callback(record((name, i)))
                futures.append(future)
        await asyncio.wait_for(asyncio.gather(*futures), self.timeout)
        assert resolved == [(name, i) for i in range(count) for name in names]
        await inbox.wait_for(
            lambda: all(len(inbox.on("broadcast", name)) >= count for name in names),
            self.timeout,
        )
        for name in names:
            assert inbox.on("broadcast", name) == [b"%d" % i for i in range(count)]

    @pytest.mark.asyncio
    async def test_publish_later_after_close_fails(self, started, channel) -> None:  # type: ignore[no-untyped-def]
        a, _ = await started()
        pipelined = self._pipelined(a)
        await a.close()
        with pytest.raises(BrokerError):
            await asyncio.wait_for(
                pipelined.publish_later("broadcast", channel, b"late"), self.timeout
            )

    # --- interest -------------------------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_unsubscribe_drops_only_that_channel(self, started, channel) -> None:  # type: ignore[no-untyped-def]
        (a, _), (b, inbox) = await started(), await started()
        kept, dropped = channel + "-kept", channel + "-dropped"
        await b.subscribe("broadcast", kept)
        await b.subscribe("broadcast", dropped)
        await b.subscribe("presence", dropped)
        await b.unsubscribe("broadcast", dropped)
        await a.publish("broadcast", dropped, b"gone")
        await a.publish("presence", dropped, b"presence kept")
        await a.publish("broadcast", kept, b"kept")
        await inbox.wait_for(
            lambda: bool(inbox.on("broadcast", kept)) and bool(inbox.on("presence", dropped)),
            self.timeout,
        )
        assert inbox.on("broadcast", dropped) == []

    @pytest.mark.asyncio
    async def test_resubscribe_after_unsubscribe(self, started, channel) -> None:  # type: ignore[no-untyped-def]
        (a, _), (b, inbox) = await started(), await started()
        await b.subscribe("broadcast", channel)
        await b.unsubscribe("broadcast", channel)
        await b.subscribe("broadcast", channel)
        await a.publish("broadcast", channel, b"again")
        await inbox.wait_for(lambda: inbox.on("broadcast", channel) == [b"again"], self.timeout)

    @pytest.mark.asyncio
    async def test_many_channels(self, started, channel) -> None:  # type: ignore[no-untyped-def]
        (a, _), (b, inbox) = await started(), await started()
        names = [f"{channel}-{i}" for i in range(100)]
        for name in names:
            await b.subscribe("broadcast", name)
        for name in names:
            await a.publish("broadcast", name, name.encode())
        await inbox.wait_for(lambda: len(inbox.items) >= 100, self.timeout)
        assert sorted(inbox.items) == sorted(("broadcast", n, n.encode()) for n in names)

    # --- lifecycle ------------------------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_close_twice_and_publish_after_close_raises(self, started, channel) -> None:  # type: ignore[no-untyped-def]
        a, _ = await started()
        await a.close()
        await a.close()
        with pytest.raises(BrokerError):
            await a.publish("broadcast", channel, b"too late")

    @pytest.mark.asyncio
    async def test_close_leaves_no_resource_warning_and_no_task(self, channel) -> None:  # type: ignore[no-untyped-def]
        before = asyncio.all_tasks()

        async def use_and_close() -> None:
            broker = await self.make_broker()
            inbox = Inbox()
            await broker.start(inbox)
            await self._until(lambda: broker.ready, self.timeout, "broker ready after start")
            await broker.subscribe("broadcast", channel)
            await broker.publish("broadcast", channel, b"x")
            await inbox.wait_for(lambda: bool(inbox.items), self.timeout)
            await broker.close()

        def leftover() -> set[asyncio.Task[Any]]:
            return {t for t in asyncio.all_tasks() - before if t is not asyncio.current_task()}

        with _resource_warnings() as caught:
            await use_and_close()  # the broker is garbage once this returns
            await self._until(lambda: not leftover(), self.timeout, "no task left after close()")
        assert caught == []

    @pytest.mark.asyncio
    async def test_start_against_a_down_server_is_bounded(self) -> None:
        async def start_and_close() -> None:
            broker = await self.make_unreachable_broker()
            try:
                await asyncio.wait_for(broker.start(Inbox()), self.start_timeout)
            except BrokerError:
                pass  # allowed: the gateway then exits with this error's one line
            except TimeoutError:
                pytest.fail(
                    f"start() against a down server did not return within "
                    f"{self.start_timeout:g}s: the gateway would exit (START_TIMEOUT_SECONDS)"
                )
            else:
                assert not broker.ready, "ready with nothing to connect to"
            finally:
                await broker.close()

        with _resource_warnings() as caught:
            await start_and_close()
        assert caught == []

    # --- settings -------------------------------------------------------------------------------

    def _settings(self, env: Mapping[str, str]) -> Any:
        if self.plugin is None:
            pytest.skip("this backend's test names no plugin (what its entry point names)")
        return load_settings({"PRESENCE_STORE": "memory", **env}, env_file=None)

    def test_from_settings_builds_a_broker_and_drops_it_cleanly(self) -> None:
        settings = self._settings(self.good_settings)
        # The gateway builds the broker once to check the settings before binding its port,
        # and drops it unstarted: that must cost nothing and leave nothing open.
        with _resource_warnings() as caught:
            broker = self.plugin.from_settings(settings)
            assert isinstance(broker, Broker)
            del broker
        assert caught == []

    def test_from_settings_names_each_bad_variable(self) -> None:
        if not self.bad_settings:
            pytest.skip("this backend's test lists no bad_settings")
        for variable, env in self.bad_settings.items():
            settings = self._settings({**self.good_settings, **env})
            with pytest.raises(ConfigError) as info:
                self.plugin.from_settings(settings)
            assert info.value.variable == variable, str(info.value)
            assert "\n" not in str(info.value), "the gateway prints it as one line"

    @pytest.mark.asyncio
    async def test_publish_to_a_stopped_server_raises(self, started, channel) -> None:  # type: ignore[no-untyped-def]
        a, _ = await started()
        await self.stop_server()
        try:

            async def refused() -> bool:
                try:
                    await asyncio.wait_for(
                        a.publish("broadcast", channel, b"x"), self.recovery_timeout
                    )
                except BrokerError:
                    return True
                return False

            # Some clients buffer briefly; within the bound, a publish must be refused.
            await wait_until_async(
                refused,
                self.recovery_timeout,
                interval=0.2,
                message="a publish refused with the MQ down",
            )
            await self._until(lambda: not a.ready, self.recovery_timeout, "not ready while down")
        finally:
            await self.start_server()

    @pytest.mark.asyncio
    async def test_recovers_after_server_restart(self, started, channel) -> None:  # type: ignore[no-untyped-def]
        (a, _), (b, inbox) = await started(), await started()
        await b.subscribe("broadcast", channel)
        await self.stop_server()
        await self._until(lambda: not b.ready, self.recovery_timeout, "subscriber not ready")
        await self.start_server()
        await self._until(lambda: a.ready and b.ready, self.recovery_timeout, "ready again")
        sent = 0

        async def delivered() -> bool:
            nonlocal sent
            await a.publish("broadcast", channel, b"after %d" % sent)
            sent += 1
            arrived: bool = await inbox.arrived(lambda: bool(inbox.on("broadcast", channel)), 0.5)
            return arrived

        # Publishing resumes by itself; the subscription was restored without our help.
        await wait_until_async(
            delivered,
            self.recovery_timeout,
            interval=0.2,
            ignore=(BrokerError,),
            message="a delivery after the restart",
        )
        assert inbox.on("broadcast", channel)[0].startswith(b"after ")


@contextmanager
def _resource_warnings() -> Iterator[list[str]]:
    """Collect the ResourceWarnings (unclosed sockets, transports, clients) raised in the
    block and by a collection at its end, whatever the warning filters say."""
    caught: list[str] = []
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always", ResourceWarning)
        yield caught
        gc.collect()
    caught.extend(str(r.message) for r in records if issubclass(r.category, ResourceWarning))
