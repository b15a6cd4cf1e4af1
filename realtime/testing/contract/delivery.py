"""Contract cases: what arrives, where, in which order and how large."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable

import pytest

from realtime.errors import BrokerError
from realtime.testing.contract.base import ContractBase, Inbox
from realtime.wire.messages import Kind


class DeliveryCases(ContractBase):
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
