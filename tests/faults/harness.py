"""The fault harness: real gateway processes, a backend publishing over HTTP every 50 ms, a
subscriber counting deliveries, /readyz polled, and a fault injected in the middle.

The same code gives the suite its figures (``tests/faults/test_*.py``, which assert bounds on
them) and the operator's table (``python -m tests.faults.measure``), so the "before" and
"after" in docs/reliability.md come from one tool.

Times are ``time.monotonic()`` seconds. A fault has two marks: ``fault`` (injected) and
``healed`` (the broken part is back: restarted, resumed, failed over). From them:

- time to red: ``fault`` to the first /readyz answer that is not 200 (None: it stayed green);
- time to green: ``healed`` to the first 200 after the last non-200 (0 if it never went red);
- first delivery: ``healed`` to the first delivery of a message published after ``healed``;
- lost: answered 200 and never delivered, with the span of their publish times (the loss window);
- refused: answered 503 (the gateway said so: the backend can retry); failed: any other
  outcome (another status, a timeout, a reset);
- duplicates: deliveries of a sequence number already delivered;
- presence: seconds from ``healed`` until a fresh subscriber's ``presence_sync`` lists exactly
  the members that should be there (None: not within the bound).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
from websockets.exceptions import ConnectionClosed

from realtime.testing.gateway import Client, ws_client
from realtime.testing.waiting import wait_until_async

PUBLISH_INTERVAL = 0.05
PUBLISH_TIMEOUT = 15.0
READY_INTERVAL = 0.05
SETTLE = 3.0  # after publishing stops, how long late deliveries may still arrive


@dataclass
class Figures:
    fault: str
    time_to_red: float | None
    time_to_green: float | None
    first_delivery: float | None
    published: int
    answered_200: int
    refused_503: int
    failed: int
    lost: int
    loss_window: float
    duplicates: int
    slowest_answer: float
    presence_after: float | None
    exit_after: float | None = None  # SIGTERM to the process's exit, where that is the fault
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def row(self) -> str:
        def f(value: float | None) -> str:
            return "-" if value is None else f"{value:.2f}"

        return (
            f"| {self.fault} | {f(self.time_to_red)} | {f(self.time_to_green)} | "
            f"{f(self.first_delivery)} | {self.published} | {self.refused_503} | {self.failed} | "
            f"{self.lost} ({self.loss_window:.2f} s) | {self.duplicates} | "
            f"{f(self.slowest_answer)} | {f(self.presence_after)} |"
        )


HEADER = (
    "| fault | to red (s) | to green (s) | first delivery (s) | published | 503 | failed | "
    "lost: 200, never delivered (window) | duplicates | slowest answer (s) | presence right "
    "after (s) |\n|---|---|---|---|---|---|---|---|---|---|---|"
)


@dataclass
class Publish:
    seq: int
    sent: float
    status: int | None = None  # None: no HTTP answer (timeout, reset)
    answered: float | None = None


class Traffic:
    """A backend posting every 50 ms (each post its own task, so a hung request does not slow
    the cadence), a subscriber on ``subscribe_ws`` recording every delivery, and /readyz of
    ``watch`` polled every 50 ms.

    ``publish_to`` lists gateway URLs the way a load balancer sees them: each post goes to the
    first whose last /readyz answer was 200 (the last one if none was). ``recover`` names the
    gateways that must be green again for the run to count as recovered (default: ``watch``).
    """

    def __init__(
        self,
        publish_to: str | list[str],
        subscribe_ws: str,
        watch: Iterable[str],
        channel: str,
        recover: Iterable[str] | None = None,
    ):
        self.publish_to = [publish_to] if isinstance(publish_to, str) else list(publish_to)
        self.subscribe_ws = subscribe_ws
        self.watch = list(watch)
        self.recover = list(recover) if recover is not None else self.watch
        self.channel = channel
        self.publishes: list[Publish] = []
        self.deliveries: list[tuple[int, float]] = []
        self.readiness: list[tuple[float, str, int | None]] = []
        self._last_status: dict[str, int | None] = {}
        self.marks: dict[str, float] = {}
        self.exit_after: float | None = None
        self.notes: list[str] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._posts: set[asyncio.Task[None]] = set()
        self._publishing = True

    def _route(self) -> str:
        for url in self.publish_to:
            if self._last_status.get(url, 200) == 200:
                return url
        return self.publish_to[-1]

    def mark(self, name: str) -> float:
        self.marks[name] = now = time.monotonic()
        return now

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Traffic]:
        """Posts on this event loop; the subscriber and the /readyz polls on a loop of their
        own, in a thread (see :meth:`_watch`)."""
        subscribed, stop = threading.Event(), threading.Event()
        watcher = threading.Thread(
            target=lambda: asyncio.run(self._watch(subscribed, stop)), name="fault-watcher"
        )
        watcher.start()
        try:
            if not await asyncio.to_thread(subscribed.wait, 10):
                raise TimeoutError("the fault subscriber did not subscribe within 10 s")
            self._tasks = [asyncio.create_task(self._publish())]
            yield self
        finally:
            self._publishing = False
            if self._posts:
                await asyncio.wait(self._posts, timeout=PUBLISH_TIMEOUT + 1)
            await self._settle()
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            stop.set()
            await asyncio.to_thread(watcher.join, 10)

    async def _watch(self, subscribed: threading.Event, stop: threading.Event) -> None:
        """The subscriber and the /readyz polls, on their own event loop. On the posting loop
        they measured the harness rather than the gateway: after a freeze, hundreds of posts
        in flight kept httpx's connection pool busy (each request walked every pooled
        connection), and the subscriber read its socket at 5-10 frames a second while a
        subscriber in another process had every message on time (docs/reliability.md). The
        posts themselves are plain one-request connections (:func:`post_once`) for the same
        reason."""
        async with httpx.AsyncClient() as http:
            tasks = [
                asyncio.create_task(self._subscribe(subscribed)),
                *(asyncio.create_task(self._poll_ready(http, url)) for url in self.watch),
            ]
            try:
                await asyncio.to_thread(stop.wait)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    async def _settle(self) -> None:
        """Wait until every 200 is delivered, or until deliveries stop coming for SETTLE s."""
        last = (len(self.deliveries), time.monotonic())
        while True:
            ok = {p.seq for p in self.publishes if p.status == 200}
            if ok <= {seq for seq, _ in self.deliveries}:
                return
            if len(self.deliveries) != last[0]:
                last = (len(self.deliveries), time.monotonic())
            elif time.monotonic() - last[1] > SETTLE:
                return
            await asyncio.sleep(0.05)

    async def _subscribe(self, subscribed: threading.Event) -> None:
        # One connection for the whole run: a subscriber that must reconnect is a finding
        # (noted), and it reconnects so the rest of the run is still measured.
        while True:
            try:
                async with ws_client(self.subscribe_ws + "?user_id=fault-subscriber") as sub:
                    await sub.subscribe(self.channel, "broadcast")
                    subscribed.set()
                    while True:
                        frame = await sub.recv(timeout=3600)
                        if frame.get("type") == "broadcast":
                            self.deliveries.append((frame["payload"]["seq"], time.monotonic()))
            except asyncio.CancelledError:
                raise
            except (ConnectionClosed, OSError, TimeoutError) as exc:
                self.notes.append(f"subscriber connection lost: {type(exc).__name__}")
                await asyncio.sleep(0.1)

    async def _publish(self) -> None:
        seq = 0
        start = time.monotonic()
        while self._publishing:
            seq += 1
            task = asyncio.create_task(self._post(seq))
            self._posts.add(task)
            task.add_done_callback(self._posts.discard)
            # Keep the cadence on the clock, not on how long the loop took.
            await asyncio.sleep(max(0.0, start + seq * PUBLISH_INTERVAL - time.monotonic()))

    async def _post(self, seq: int) -> None:
        entry = Publish(seq, time.monotonic())
        self.publishes.append(entry)
        body = {"channel": self.channel, "event": "tick", "payload": {"seq": seq}}
        try:
            entry.status = await asyncio.wait_for(
                post_once(self._route() + "/api/event", body), PUBLISH_TIMEOUT
            )
        except (OSError, TimeoutError, ValueError):
            entry.status = None  # refused, reset, timed out or not HTTP
        entry.answered = time.monotonic()

    async def _poll_ready(self, http: httpx.AsyncClient, url: str) -> None:
        while True:
            started = time.monotonic()
            try:
                status: int | None = (await http.get(url + "/readyz", timeout=1.0)).status_code
            except httpx.HTTPError:
                status = None
            self.readiness.append((started, url, status))
            self._last_status[url] = status
            await asyncio.sleep(max(0.0, READY_INTERVAL - (time.monotonic() - started)))

    # --- waiting on the run, from a scenario ---

    def delivered_since(self, t: float) -> bool:
        sent = {p.seq: p.sent for p in self.publishes}
        return any(sent.get(seq, 0.0) >= t for seq, _ in self.deliveries)

    def green_since(self, t: float) -> bool:
        """Every watched /readyz answered 200 after ``t``, with nothing else after that."""
        last: dict[str, int | None] = {}
        for when, url, status in self.readiness:
            if when >= t:
                last[url] = status
        return all(last.get(url) == 200 for url in self.recover)

    async def recovered(self, timeout: float) -> None:
        """Wait until /readyz is green and a message published after ``healed`` arrived."""
        healed = self.marks["healed"]
        await wait_until_async(
            lambda: self.green_since(healed) and self.delivered_since(healed),
            timeout,
            interval=0.05,
            message="green /readyz and a delivery after the fault healed",
        )

    # --- figures ---

    def figures(self, fault: str, presence_after: float | None) -> Figures:
        fault_at, healed = self.marks["fault"], self.marks["healed"]
        red = [t for t, _, s in self.readiness if t >= fault_at and s != 200]
        time_to_red = red[0] - fault_at if red else None
        after = [(t, s) for t, u, s in self.readiness if t >= fault_at and u in self.recover]
        last_red = max((t for t, s in after if s != 200), default=None)
        time_to_green: float | None = 0.0
        if last_red is not None:
            greens = [t for t, s in after if s == 200 and t > last_red]
            time_to_green = max(0.0, greens[0] - healed) if greens else None
        sent = {p.seq: p.sent for p in self.publishes}
        firsts = [t for seq, t in self.deliveries if sent.get(seq, 0.0) >= healed]
        first_delivery = min(firsts) - healed if firsts else None
        delivered: dict[int, int] = {}
        for seq, _ in self.deliveries:
            delivered[seq] = delivered.get(seq, 0) + 1
        lost = [p for p in self.publishes if p.status == 200 and p.seq not in delivered]
        window = (max(p.sent for p in lost) - min(p.sent for p in lost)) if lost else 0.0
        answers = [p.answered - p.sent for p in self.publishes if p.answered is not None]
        return Figures(
            fault=fault,
            time_to_red=time_to_red,
            time_to_green=time_to_green,
            first_delivery=first_delivery,
            published=len(self.publishes),
            answered_200=sum(p.status == 200 for p in self.publishes),
            refused_503=sum(p.status == 503 for p in self.publishes),
            failed=sum(p.status not in (200, 503) for p in self.publishes),
            lost=len(lost),
            loss_window=window,
            duplicates=sum(n - 1 for n in delivered.values()),
            slowest_answer=max(answers, default=0.0),
            presence_after=presence_after,
            exit_after=self.exit_after,
            notes=list(dict.fromkeys(self.notes)),
        )


async def post_once(url: str, body: dict[str, Any]) -> int:
    """POST ``body`` as JSON on a connection of its own (``Connection: close``): the status.
    No client pool, so a few hundred posts hung on a frozen backend cost the harness nothing
    while they wait."""
    parts = urlsplit(url)
    data = json.dumps(body).encode()
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(
            f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n"
            "Connection: close\r\n\r\n".encode()
            + data
        )
        await writer.drain()
        status_line = await reader.readline()
        version, _, rest = status_line.decode("latin-1").partition(" ")
        if not version.startswith("HTTP/"):
            raise ValueError(f"not an HTTP response: {status_line!r}")
        return int(rest.split(" ", 1)[0])
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def presence_users(ws_url: str, channel: str) -> set[str]:
    """The users a fresh subscriber's presence_sync lists (a new connection each time)."""
    async with ws_client(ws_url + f"?user_id=probe-{uuid.uuid4().hex[:8]}") as probe:
        sync = await probe.subscribe(channel, "presence")
        assert sync is not None
        return {user["user_id"] for user in sync["users"]}


async def presence_right_after(
    ws_url: str, channel: str, expected: set[str], since: float, timeout: float
) -> float | None:
    """Seconds from ``since`` until presence lists exactly ``expected`` (None: not in time)."""

    async def right() -> bool:
        return await presence_users(ws_url, channel) == expected

    try:
        await wait_until_async(right, timeout, interval=0.2, ignore=(OSError, ConnectionClosed))
    except TimeoutError:
        return None
    return time.monotonic() - since


@contextlib.asynccontextmanager
async def member(ws_url: str, user: str, channel: str) -> AsyncIterator[Client]:
    """A client present in ``channel`` for the whole block (it only joins; it reads nothing)."""
    async with ws_client(ws_url + f"?user_id={user}") as client:
        await client.request({"type": "presence_join", "channel": channel, "payload": {"u": user}})
        yield client


async def run_fault(
    name: str,
    traffic: Traffic,
    inject: Callable[[], Awaitable[None]],
    heal: Callable[[], Awaitable[None]],
    *,
    before: float = 1.0,
    recover_within: float = 30.0,
    after: float = 1.0,
    presence: tuple[str, set[str]] | None = None,
    presence_within: float = 15.0,
) -> Figures:
    """Traffic for ``before`` s, the fault, its healing, then traffic until recovered plus
    ``after`` s; presence (ws url, expected users) checked once recovered."""
    checking: asyncio.Task[float | None] | None = None
    async with traffic.running():
        await asyncio.sleep(before)  # steady traffic before the fault, on purpose
        traffic.mark("fault")
        await inject()
        await heal()
        healed = traffic.mark("healed")
        if presence is not None:
            # From the moment the fault healed, alongside the traffic.
            ws_url, expected = presence
            checking = asyncio.create_task(
                presence_right_after(ws_url, traffic.channel, expected, healed, presence_within)
            )
        try:
            await traffic.recovered(recover_within)
        except TimeoutError as exc:
            traffic.notes.append(str(exc))
        await asyncio.sleep(after)  # steady traffic after recovery, on purpose
    presence_after = await checking if checking is not None else None
    return traffic.figures(name, presence_after)


def dump(figures: Iterable[Figures]) -> str:
    return json.dumps([f.as_dict() for f in figures], indent=1)
