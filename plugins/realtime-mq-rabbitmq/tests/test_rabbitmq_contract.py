"""The broker contract suite against a real RabbitMQ, restarts included, plus routing-key safety."""

from __future__ import annotations

import asyncio
import uuid
from typing import ClassVar

import pytest

from realtime.brokers.base import Broker
from realtime.errors import BrokerError
from realtime.testing import BrokerContract, Inbox
from realtime.testing.services import RestartUnsupported
from realtime.testing.waiting import free_port
from realtime_rabbitmq import RabbitMQBroker, RabbitMQOptions
from realtime_rabbitmq import broker as broker_module
from realtime_rabbitmq.testing import RabbitMQServer

pytestmark = pytest.mark.integration


def options(url: str, **overrides: object) -> RabbitMQOptions:
    # A short reconnect interval keeps the restart cases quick; production default is 2 s.
    defaults: dict[str, object] = {"reconnect_interval": 0.5, "publish_timeout": 3.0}
    return RabbitMQOptions(url=url, **{**defaults, **overrides})  # type: ignore[arg-type]


class TestRabbitMQBroker(BrokerContract):
    # A native RabbitMQ takes ~6-10 s to come back on a busy 2-core machine.
    recovery_timeout: ClassVar[float] = 45.0
    plugin = RabbitMQBroker
    good_settings: ClassVar[dict[str, str]] = {
        "BROADCAST_RABBITMQ_URL": "amqp://guest:guest@127.0.0.1:5672/"
    }
    bad_settings: ClassVar[dict[str, dict[str, str]]] = {
        "BROADCAST_RABBITMQ_EXCHANGE_TYPE": {"BROADCAST_RABBITMQ_EXCHANGE_TYPE": "nearest"},
        "BROADCAST_RABBITMQ_URL": {"BROADCAST_RABBITMQ_URL": "http://127.0.0.1/"},
    }

    @pytest.fixture(autouse=True)
    def _server(self, rabbitmq: RabbitMQServer) -> None:
        self.server = rabbitmq

    async def make_broker(self) -> Broker:
        return RabbitMQBroker(options(self.server.url))

    async def make_unreachable_broker(self) -> Broker:
        return RabbitMQBroker(options(f"amqp://guest:guest@127.0.0.1:{free_port()}/"))

    async def stop_server(self) -> None:
        try:
            await asyncio.to_thread(self.server.stop)
        except RestartUnsupported as exc:
            pytest.skip(str(exc))

    async def start_server(self) -> None:
        await asyncio.to_thread(self.server.start)

    # --- RabbitMQ-specific ----------------------------------------------------------------------

    @pytest.mark.asyncio
    async def test_wildcard_channel_names_match_only_themselves(self, started, channel) -> None:  # type: ignore[no-untyped-def]
        (a, _), (b, inbox) = await started(), await started()
        for wildcard in ("*", "#", "*.*", "#.x", "a.*", f"{channel}.#"):
            await b.subscribe("broadcast", wildcard)
        others = ["plain", f"{channel}.x", "a.b", "x", "a.b.c", "", "."]
        for name in others:
            await a.publish("broadcast", name, b"not for wildcards")
        for wildcard in ("*", "#", "*.*", "#.x", "a.*", f"{channel}.#"):
            await a.publish("broadcast", wildcard, wildcard.encode())
        await inbox.wait_for(lambda: len(inbox.items) >= 6, self.timeout)
        await self._settle(a, b, inbox, 6)
        assert sorted(inbox.items) == sorted(
            ("broadcast", w, w.encode()) for w in ("*", "#", "*.*", "#.x", "a.*", f"{channel}.#")
        )

    @pytest.mark.asyncio
    async def test_long_and_unicode_channel_names(self, started, channel) -> None:  # type: ignore[no-untyped-def]
        (a, _), (b, inbox) = await started(), await started()
        long_utf8 = "é" * 200  # 400 bytes: past RabbitMQ's 255-byte routing-key limit
        long_ascii = "x" * 200
        near = "é" * 199 + "e"
        names = [long_utf8, long_ascii, f"{channel} 🎉", f"{channel}~", "~"]
        for name in names:
            await b.subscribe("presence", name)
        for name in [*names, near, "x" * 199]:
            await a.publish("presence", name, name.encode())
        await inbox.wait_for(lambda: len(inbox.items) >= len(names), self.timeout)
        await self._settle(a, b, inbox, len(names))
        assert sorted(inbox.items) == sorted(("presence", n, n.encode()) for n in names)

    @pytest.mark.asyncio
    async def test_subscribed_while_down_is_bound_after_restart(self, started, channel) -> None:  # type: ignore[no-untyped-def]
        (a, _), (b, inbox) = await started(), await started()
        before, during, dropped = channel + "-before", channel + "-during", channel + "-dropped"
        await b.subscribe("broadcast", before)
        await b.subscribe("broadcast", dropped)
        await self.stop_server()
        try:
            await self._until(lambda: not b.ready, self.recovery_timeout, "not ready while down")
            # The hub keeps changing interest while RabbitMQ is away; neither call may hang.
            await asyncio.wait_for(b.subscribe("broadcast", during), 2)
            await asyncio.wait_for(b.unsubscribe("broadcast", dropped), 2)
        finally:
            await self.start_server()
        await self._until(lambda: a.ready and b.ready, self.recovery_timeout, "ready again")
        for name in (dropped, before, during):
            await a.publish("broadcast", name, name.encode())
        await inbox.wait_for(lambda: len(inbox.items) >= 2, self.timeout)
        await self._settle(a, b, inbox, 2)
        assert sorted(inbox.items) == sorted(
            [
                ("broadcast", before, before.encode()),
                ("broadcast", during, during.encode()),
            ]
        )

    @pytest.mark.asyncio
    async def test_queue_deleted_by_an_operator_is_rebuilt(self, started, channel) -> None:  # type: ignore[no-untyped-def]
        (a, _), (b, inbox) = await started(), await started()
        assert isinstance(b, RabbitMQBroker)
        await b.subscribe("broadcast", channel)
        old = b._queue
        assert old is not None and old.startswith("amq.gen-")  # server-named
        # Exclusive: only an administrator can delete it, not another AMQP connection.
        if self.server.kind != "native":
            pytest.skip("deletes the queue with rabbitmqctl")
        done = await asyncio.to_thread(self.server.ctl, "delete_queue", old)
        assert done.returncode == 0, done.stderr
        # RabbitMQ cancels b's consumer; b declares a new queue with the same bindings.
        await self._until(
            lambda: b.ready and b._queue not in (None, old), self.timeout, "new queue"
        )
        await a.publish("broadcast", channel, b"after")
        await inbox.wait_for(lambda: inbox.on("broadcast", channel) == [b"after"], self.timeout)

    @pytest.mark.asyncio
    async def test_started_while_down_becomes_ready(self, channel, monkeypatch) -> None:  # type: ignore[no-untyped-def]
        monkeypatch.setattr(broker_module, "START_WAIT", 0.5)
        b, inbox = RabbitMQBroker(options(self.server.url)), Inbox()
        await self.stop_server()
        try:
            try:
                await b.start(inbox)  # returns, not ready, retrying in the background
                assert not b.ready
                await b.subscribe("broadcast", channel)
                with pytest.raises(BrokerError):
                    await b.publish("broadcast", channel, b"nobody there")
            finally:
                await self.start_server()
            await self._until(lambda: b.ready, self.recovery_timeout, "ready once RabbitMQ is up")
            await b.publish("broadcast", channel, b"hello")
            await inbox.wait_for(lambda: inbox.on("broadcast", channel) == [b"hello"], self.timeout)
        finally:
            await b.close()

    @pytest.mark.asyncio
    async def test_direct_exchange(self, channel) -> None:  # type: ignore[no-untyped-def]
        exchange = f"realtime-direct-{uuid.uuid4().hex[:8]}"
        made = [
            RabbitMQBroker(options(self.server.url, exchange=exchange, exchange_type="direct"))
            for _ in range(2)
        ]
        inbox = Inbox()
        try:
            await made[0].start(Inbox())
            await made[1].start(inbox)
            await self._until(lambda: all(b.ready for b in made), self.timeout, "ready")
            for name in (channel, "*", "#", f"{channel}.a"):
                await made[1].subscribe("broadcast", name)
            for name in (f"{channel}.b", "*", channel, "#", f"{channel}.a", "other"):
                await made[0].publish("broadcast", name, name.encode())
            await inbox.wait_for(lambda: len(inbox.items) >= 4, self.timeout)
            await self._settle(made[0], made[1], inbox, 4)
            assert inbox.items == [
                ("broadcast", n, n.encode()) for n in ("*", channel, "#", f"{channel}.a")
            ]
        finally:
            for broker in made:
                await broker.close()

    async def _settle(self, a: Broker, b: Broker, inbox: Inbox, count: int) -> None:
        """Let anything wrongly routed arrive: a marker published last on its own channel
        comes after everything else the publisher sent to b's queue (one queue, in order)."""
        marker = f"marker-{uuid.uuid4().hex[:8]}"
        await b.subscribe("broadcast", marker)
        await a.publish("broadcast", marker, b"")
        await inbox.wait_for(lambda: bool(inbox.on("broadcast", marker)), self.timeout)
        inbox.items = [item for item in inbox.items if item[1] != marker]
        assert len(inbox.items) >= count
