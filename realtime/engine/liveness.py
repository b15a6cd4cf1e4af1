"""Proof that each broker's subscriber path works end to end, and that the presence store
answers: what ``/readyz`` reports beside the brokers' own ``ready``.

Every ``BROKER_PROBE_INTERVAL_SECONDS`` (default 1) the instance publishes a small message
through each broker on a channel of its own, ``__realtime__.probe.<instance>``, which it
subscribes like any channel; a probe passes when the message comes back through the
subscriber within ``BROKER_PROBE_TIMEOUT_SECONDS`` (default 2) of the round's start. The same
interval pings the presence store, if it can be pinged (:class:`Pingable`; the memory store
cannot fail and is always healthy), within the same timeout. It works for any broker, a third
party's included, through the ``Broker`` protocol alone: the node hands every message on a
reserved channel (:data:`realtime.wire.messages.RESERVED_PREFIX`) here before the hub sees it,
and clients may not use those channels.

Bounds, with interval I and timeout T (defaults 1 s and 2 s):

- a frozen, partitioned or deaf subscriber, or a frozen presence Redis, turns ``/readyz`` red
  within **I + T** (3 s by default) of the fault, plus event-loop lag; a broker that says it is
  not ``ready`` turns it red at once;
- after the fault ends, ``/readyz`` turns green only after a probe *sent after the last
  failure* came back: within **I + round trip** of the broker being ready again (plus the
  broker's own reconnect time);
- a probe loop that stopped for any reason leaves ``/readyz`` red once its last success is
  older than I + T + 1 s.

``BROKER_PROBE_INTERVAL_SECONDS=0`` turns probes and store pings off: ``/readyz`` then only
reflects the brokers' ``ready`` (today's meaning before probes), and a warning says so at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

from realtime import metrics
from realtime.brokers.base import Broker
from realtime.wire.messages import RESERVED_PREFIX, Kind

log = logging.getLogger("realtime.engine.liveness")

Clock = Callable[[], float]


@runtime_checkable
class Pingable(Protocol):
    """An optional capability of a presence store: one bounded round trip to its backend,
    raising when it does not answer (the liveness loop bounds it with the probe timeout)."""

    async def ping(self) -> None: ...


class ProbeState:
    """One probe's verdict, pure logic over a clock: red from the start and after every
    failure; green only once a round *started after* the last failure succeeded; red again
    when no round succeeded for longer than ``stale_after``."""

    def __init__(self, stale_after: float, clock: Clock = time.monotonic) -> None:
        self._stale_after = stale_after
        self._clock = clock
        self._failed_at = clock()
        self._ok = False
        self.last_ok: float | None = None
        self.error: str | None = "no probe has come back yet"
        self.failures = 0

    def succeeded(self, started: float) -> None:
        """A round that started at ``started`` came back."""
        if started < self._failed_at:
            return  # it was under way when something failed: it proves nothing since
        self._ok = True
        self.last_ok = self._clock()
        self.error = None

    def failed(self, reason: str) -> None:
        if self._ok:
            log.warning("liveness probe failed: %s", reason)
        self._ok = False
        self._failed_at = self._clock()
        self.error = reason
        self.failures += 1

    @property
    def healthy(self) -> bool:
        if not self._ok or self.last_ok is None:
            return False
        return self._clock() - self.last_ok <= self._stale_after

    def report(self) -> dict[str, Any]:
        ago = None if self.last_ok is None else round(self._clock() - self.last_ok, 3)
        error = self.error
        if error is None and not self.healthy:
            error = "probe overdue"
        return {"ok": self.healthy, "last_ok_seconds_ago": ago, "error": error}


class _BrokerProbe:
    """The loop that probes one broker."""

    def __init__(
        self,
        broker: Broker,
        kind: Kind,
        channel: str,
        interval: float,
        timeout: float,
        clock: Clock,
    ) -> None:
        self.broker = broker
        self.kind = kind
        self.channel = channel
        self.state = ProbeState(interval + timeout + 1.0, clock)
        self._interval = interval
        self._timeout = timeout
        self._clock = clock
        self._subscribed = False
        self._seq = 0
        self._waiting: tuple[int, asyncio.Future[None]] | None = None

    def arrived(self, data: bytes) -> None:
        waiting = self._waiting
        if waiting is None:
            return
        seq, future = waiting
        if data == str(seq).encode() and not future.done():
            future.set_result(None)

    async def run(self) -> None:
        while True:
            started = self._clock()
            try:
                await self._round(started)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a broker raising something unforeseen: still a failure
                log.exception("liveness probe round failed")
                self.state.failed(f"probe failed: {type(exc).__name__}")
            await asyncio.sleep(max(0.0, self._interval - (self._clock() - started)))

    async def _round(self, started: float) -> None:
        if not self.broker.ready:
            self.state.failed("broker not ready")
            return
        self._seq += 1
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting = (self._seq, future)
        try:
            async with asyncio.timeout(self._timeout):
                if not self._subscribed:
                    await self.broker.subscribe(self.kind, self.channel)
                    self._subscribed = True
                await self.broker.publish(self.kind, self.channel, str(self._seq).encode())
                await future
        except TimeoutError:
            self.state.failed(f"no probe back within {self._timeout:g}s")
            metrics.PROBE_FAILURES.labels(self.kind).inc()
        except Exception as exc:
            # BrokerError and the like: the text may name hosts, which /readyz must not show.
            log.warning("liveness probe publish failed: %s", exc)
            self.state.failed(f"probe publish failed ({type(exc).__name__})")
            metrics.PROBE_FAILURES.labels(self.kind).inc()
        else:
            self.state.succeeded(started)
            metrics.probe_ok(self.kind, self._clock() - started)
        finally:
            self._waiting = None


class Liveness:
    """Probes every distinct broker of ``brokers`` and pings ``store``; ``interval`` 0: off."""

    def __init__(
        self,
        brokers: Mapping[Kind, Broker],
        store: object,
        interval: float,
        timeout: float,
        clock: Clock = time.monotonic,
    ) -> None:
        self.interval = interval
        self.timeout = timeout
        self.instance = uuid.uuid4().hex[:16]
        self.channel = f"{RESERVED_PREFIX}.probe.{self.instance}"
        self._clock = clock
        self._by_kind: dict[Kind, _BrokerProbe] = {}
        distinct: dict[int, _BrokerProbe] = {}
        for kind, broker in brokers.items():
            probe = distinct.get(id(broker))
            if probe is None:
                probe = _BrokerProbe(broker, kind, self.channel, interval, timeout, clock)
                distinct[id(broker)] = probe
            self._by_kind[kind] = probe
        self._probes = list(distinct.values())
        self._store = store if isinstance(store, Pingable) else None
        self.store_state = ProbeState(interval + timeout + 1.0, clock)
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def enabled(self) -> bool:
        return self.interval > 0

    def start(self) -> None:
        if not self.enabled:
            log.warning(
                "BROKER_PROBE_INTERVAL_SECONDS=0: broker probes and presence store pings are"
                " off; /readyz only reflects each broker's own connection state"
            )
            return
        for probe in self._probes:
            self._tasks.append(asyncio.create_task(probe.run(), name=f"probe-{probe.kind}"))
        if self._store is not None:
            self._tasks.append(asyncio.create_task(self._ping_store(), name="probe-store"))

    def deliver(self, kind: Kind, channel: str, data: bytes) -> None:
        """A message on a reserved channel: ours is a probe coming back; any other (another
        instance's probe on a broker that shares topics) is dropped."""
        if channel != self.channel:
            return
        probe = self._by_kind.get(kind)
        if probe is not None:
            probe.arrived(data)

    async def _ping_store(self) -> None:
        assert self._store is not None
        while True:
            started = self._clock()
            try:
                async with asyncio.timeout(self.timeout):
                    await self._store.ping()
            except asyncio.CancelledError:
                raise
            except TimeoutError:
                self.store_state.failed(f"no answer within {self.timeout:g}s")
            except Exception as exc:
                log.warning("presence store ping failed: %s", exc)
                self.store_state.failed(f"ping failed ({type(exc).__name__})")
            else:
                self.store_state.succeeded(started)
            await asyncio.sleep(max(0.0, self.interval - (self._clock() - started)))

    @property
    def healthy(self) -> bool:
        if not self.enabled:
            return True
        store_ok = self._store is None or self.store_state.healthy
        return store_ok and all(probe.state.healthy for probe in self._probes)

    def report(self) -> dict[str, Any]:
        """The detail ``/readyz`` adds: each kind's probe and the presence store."""
        if not self.enabled:
            return {"probes": {}, "presence_store": {"ok": True, "checked": False}}
        store: dict[str, Any] = {"ok": True, "checked": False}
        if self._store is not None:
            store = {**self.store_state.report(), "checked": True}
        # One report per probe: a broker carrying both kinds reports the same reading twice.
        readings = {id(probe): probe.state.report() for probe in self._by_kind.values()}
        return {
            "probes": {kind: readings[id(probe)] for kind, probe in self._by_kind.items()},
            "presence_store": store,
        }

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
