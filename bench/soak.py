"""The soak: two gateways on one real Redis, thousands of connections with churn, for minutes.

    make soak                                   # 10 minutes, 1,000 connections
    make soak SOAK_ARGS="--duration 60 --connections 600"    # what CI runs
    .venv/bin/python -m bench.soak --help

Starts a Redis (``realtime.testing.services.redis_server``: ``REDIS_URL`` if set, else a
throwaway one) and two ``python -m realtime`` processes on it (Redis broker and presence).
Connection slots alternate between the two gateways; slots ``2k`` and ``2k+1`` are the same
user on different gateways, in the same channel. Each slot opens a session: connect,
subscribe to its channel (broadcast and presence, waiting for the ``ack``), join presence;
while open it leaves and re-joins presence now and then; after a random lifetime (churn) it
closes and the slot opens a new session. Meanwhile publishes go to random channels at a fixed
rate, in turn over HTTP and over a WebSocket ``broadcast`` with ``ref``, to either gateway.

Asserted at the end (exit status 1 and a ``FAILED`` line for each one that does not hold):

- nothing lost: every publish answered 200/``ack`` reached every session owed it (the rule
  is in ``bench/soak_ledger.py``), none twice, none on another channel; no publish refused,
  no error frame, no request unanswered, no connection closed by the gateway;
- presence exact: each gateway's ``presence_sync`` and Redis's ``presence:<channel>`` hash
  list exactly the users with a joined open connection; once every client has closed, every
  hash is empty and both gateways report 0 connections;
- RSS flat: after the warm-up, each gateway's RSS stays within ``--rss-bound-mb`` of its value
  at the end of the warm-up (``/proc/<pid>/status``, sampled every ``--sample`` seconds);
- no file-descriptor leak: each gateway's open fds (``/proc/<pid>/fd``, by kind): at the end
  its client sockets match ``/healthz``'s connections and its non-socket fds their count after
  the warm-up; with no client at all, no client socket and non-socket fds as before the
  first client (each within ``--fd-bound``).

Asyncio tasks cannot be counted from outside the process (the gateway has no endpoint for
them); what the soak sees of a task leak is RSS growth and the connection count.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import itertools
import json
import os
import platform
import random
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis
import uvloop
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bench.soak_ledger import Ledger, Publish, Session
from realtime.testing.gateway import GatewayProcess, spawn_gateway
from realtime.testing.services import redis_server
from realtime.testing.waiting import wait_until_async

RESULTS = Path(__file__).parent / "results"
# Generous: the machine may be shared, and a late answer is still an answer.
REQUEST_TIMEOUT = 20.0


class Failures:
    """Whatever went wrong during the run, counted by kind, with the first few details."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.examples: dict[str, list[str]] = {}

    def add(self, kind: str, detail: str = "") -> None:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        examples = self.examples.setdefault(kind, [])
        if len(examples) < 5:
            examples.append(detail)


class Conn:
    """One WebSocket connection: a reader that records broadcasts and answers ``ref`` requests."""

    def __init__(self, ws: ClientConnection, failures: Failures, session: Session | None) -> None:
        self.ws = ws
        self.failures = failures
        self.session = session
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.refs = itertools.count(1)
        self.closing = False
        self.reader = asyncio.create_task(self._read())

    async def request(self, frame: dict[str, Any]) -> dict[str, Any]:
        ref = next(self.refs)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[ref] = future
        try:
            await self.ws.send(json.dumps({**frame, "ref": ref}))
            return await asyncio.wait_for(future, REQUEST_TIMEOUT)
        finally:
            self.pending.pop(ref, None)

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                frame = json.loads(raw)
                kind = frame.get("type")
                if kind == "broadcast":
                    if self.session is not None:
                        self.session.receive(frame["payload"]["id"], frame["channel"])
                elif kind in ("ack", "error"):
                    future = self.pending.get(frame.get("ref"))  # type: ignore[arg-type]
                    if future is not None and not future.done():
                        future.set_result(frame)
                    elif kind == "error":
                        self.failures.add("unasked error frame", str(frame))
        except ConnectionClosed as exc:
            if not self.closing:
                self.failures.add("connection closed by the gateway", repr(exc))
                if self.session is not None and self.session.left is None:
                    self.session.left = time.monotonic()
        for future in self.pending.values():
            if not future.done():
                future.set_exception(ConnectionError("closed"))

    async def close(self) -> None:
        self.closing = True
        await self.ws.close()
        await self.reader


@dataclass
class Slot:
    index: int
    user: str
    channel: str
    gateway: int
    conn: Conn | None = None
    joined: bool = False
    busy: bool = True  # opening, closing or changing presence: its state is not settled
    sessions: int = 0


@dataclass
class Sample:
    t: float
    rss_kb: list[int]
    fds: list[int]
    fd_kinds: list[dict[str, int]]


@dataclass
class Run:
    args: argparse.Namespace
    gateways: list[GatewayProcess]
    redis_port: int
    ledger: Ledger
    failures: Failures = field(default_factory=Failures)
    slots: list[Slot] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    churning: bool = True
    session_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    presence_toggles: int = 0

    def url(self, gateway: int, user: str) -> str:
        return f"{self.gateways[gateway].ws_url}?user_id={user}"


def rss_kb(pid: int) -> int:
    match = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    assert match is not None
    return int(match.group(1))


def tcp_sockets() -> dict[str, tuple[int, int]]:
    """Socket inode -> (local port, remote port) of every TCP socket on the machine."""
    sockets = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local, remote, inode = fields[1], fields[2], fields[9]
                sockets[inode] = (
                    int(local.rsplit(":", 1)[1], 16),
                    int(remote.rsplit(":", 1)[1], 16),
                )
    return sockets


def fd_targets(pid: int) -> list[str]:
    """What each of a process's open fds is (``socket:[inode]``, a path, ``anon_inode:...``)."""
    targets = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(FileNotFoundError):  # closed while listed
            targets.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
    return targets


def fd_kinds(
    targets: list[str], port: int, redis_port: int, tcp: dict[str, tuple[int, int]]
) -> dict[str, int]:
    """A process's open fds by kind: its WebSocket/HTTP clients (TCP to its port), its Redis
    connections, and everything else (listening socket, files, pipes, epoll, ...). ``tcp``
    must be read after ``targets``: a socket accepted after the TCP table was read is in no
    table, and was counted as "other" (a false "other fds" change in CI's run, mid-churn)."""
    kinds = {"clients": 0, "redis": 0, "other": 0}
    for target in targets:
        inode = target[len("socket:[") : -1] if target.startswith("socket:[") else ""
        local, remote = tcp.get(inode, (0, 0))
        if local == port and remote != 0:
            kinds["clients"] += 1
        elif remote == redis_port:
            kinds["redis"] += 1
        else:
            kinds["other"] += 1
    return kinds


def sample(run: Run, start: float) -> Sample:
    targets = [fd_targets(g.process.pid) for g in run.gateways]
    tcp = tcp_sockets()  # after the fds: every socket listed is in it (unless closed since)
    fds = []
    for g, listed in zip(run.gateways, targets, strict=True):
        port = int(g.url.rsplit(":", 1)[1])
        fds.append(fd_kinds(listed, port, run.redis_port, tcp))
    return Sample(
        round(time.monotonic() - start, 1),
        [rss_kb(g.process.pid) for g in run.gateways],
        [sum(k.values()) for k in fds],
        fds,
    )


async def ask(conn: Conn, run: Run, frame: dict[str, Any]) -> bool:
    """A ``ref`` request; an error frame, a timeout or a dead connection is a failure."""
    try:
        answer = await conn.request(frame)
    except (TimeoutError, ConnectionError, ConnectionClosed) as exc:
        run.failures.add(f"{frame['type']} unanswered", repr(exc))
        return False
    if answer.get("type") != "ack":
        run.failures.add(f"{frame['type']} refused", str(answer))
        return False
    return True


async def open_session(run: Run, slot: Slot) -> None:
    ws = await connect(
        run.url(slot.gateway, slot.user),
        open_timeout=REQUEST_TIMEOUT,
        ping_interval=None,
        compression=None,
    )
    session = Session(next(run.session_ids), slot.channel, subscribed=float("inf"))
    conn = Conn(ws, run.failures, session)
    slot.conn, slot.joined, slot.sessions = conn, False, slot.sessions + 1
    subscribe = {"type": "subscribe", "channel": slot.channel, "listen": ["broadcast", "presence"]}
    if await ask(conn, run, subscribe):
        session.subscribed = time.monotonic()
        run.ledger.sessions.append(session)
    join = {"type": "presence_join", "channel": slot.channel, "payload": {"slot": slot.index}}
    slot.joined = await ask(conn, run, join)


async def close_session(run: Run, slot: Slot) -> None:
    conn, slot.conn = slot.conn, None
    assert conn is not None and conn.session is not None
    conn.session.left = time.monotonic()
    slot.joined = False
    await conn.close()


async def toggle_presence(run: Run, slot: Slot) -> None:
    assert slot.conn is not None
    run.presence_toggles += 1
    if slot.joined:
        if await ask(slot.conn, run, {"type": "presence_leave", "channel": slot.channel}):
            slot.joined = False
    else:
        join = {"type": "presence_join", "channel": slot.channel, "payload": {"slot": slot.index}}
        slot.joined = await ask(slot.conn, run, join)


async def slot_loop(run: Run, slot: Slot, opened: asyncio.Semaphore) -> None:
    """Sessions one after another until churn stops; the last one stays open."""
    args = run.args
    while True:
        slot.busy = True
        async with opened:
            try:
                await open_session(run, slot)
            except (OSError, TimeoutError, ConnectionClosed) as exc:
                run.failures.add("connect failed", repr(exc))
                if not run.churning:
                    return
                await asyncio.sleep(1)
                continue
        slot.busy = False
        end = time.monotonic() + random.expovariate(1 / args.lifetime)
        while run.churning and time.monotonic() < end:
            pause = random.expovariate(1 / args.presence_every)
            await asyncio.sleep(max(0.0, min(pause, end - time.monotonic(), 1.0)))
            if run.churning and pause <= 1.0 and random.random() < 0.5:
                slot.busy = True
                await toggle_presence(run, slot)
                slot.busy = False
        if not run.churning:
            return
        slot.busy = True
        await close_session(run, slot)


async def publish_one(
    run: Run, n: int, http: httpx.AsyncClient, publishers: list[Conn], rotation: int
) -> None:
    channel = f"soak{random.randrange(run.args.channels)}"
    gateway = rotation % 2
    publish = Publish(n, channel, sent=time.monotonic())
    run.ledger.publishes[n] = publish
    body = {"channel": channel, "event": "soak", "payload": {"id": n}}
    if rotation < 2:
        try:
            response = await http.post(f"{run.gateways[gateway].url}/api/event", json=body)
        except httpx.HTTPError as exc:
            run.failures.add("publish failed", repr(exc))
            return
        if response.status_code != 200:
            run.failures.add("publish refused", f"{response.status_code} {response.text}")
            return
    elif not await ask(publishers[gateway], run, {"type": "broadcast", **body}):
        return
    publish.acked = time.monotonic()


async def publish_loop(run: Run, http: httpx.AsyncClient, publishers: list[Conn]) -> None:
    """``--rate`` publishes a second at fixed times (each its own task, so a slow answer does
    not hold back the next), in turn: HTTP to gateway 1, 2, WebSocket to 1, 2."""
    tasks: set[asyncio.Task[None]] = set()
    start = time.monotonic()
    try:
        for n in itertools.count():
            await asyncio.sleep(max(0.0, start + n / run.args.rate - time.monotonic()))
            task = asyncio.create_task(publish_one(run, n, http, publishers, n % 4))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
    finally:
        # Stopped: the publishes already sent are answered before the audit.
        await asyncio.gather(*tasks)


async def sampler(run: Run, start: float) -> None:
    while True:
        await asyncio.sleep(run.args.sample)
        s = sample(run, start)
        run.samples.append(s)
        print(
            f"  {s.t:6.0f} s  RSS MB {' '.join(f'{k / 1024:7.1f}' for k in s.rss_kb)}"
            f"  fds {' '.join('/'.join(str(v) for v in k.values()) for k in s.fd_kinds)}"
            f"  publishes {len(run.ledger.publishes)}"
            f"  sessions {len(run.ledger.sessions)}",
            flush=True,
        )


async def expected_presence(run: Run) -> dict[str, set[str]]:
    expected: dict[str, set[str]] = {f"soak{c}": set() for c in range(run.args.channels)}
    for slot in run.slots:
        if slot.conn is not None and slot.joined:
            expected[slot.channel].add(slot.user)
    return expected


async def presence_seen(run: Run, gateway: int) -> dict[str, set[str]]:
    """Every channel's ``presence_sync`` from one gateway, through a fresh connection."""
    ws = await connect(run.url(gateway, "checker"), ping_interval=None, compression=None)
    seen: dict[str, set[str]] = {}
    try:
        for c in range(run.args.channels):
            channel = f"soak{c}"
            ref = c + 1
            await ws.send(
                json.dumps(
                    {"type": "subscribe", "channel": channel, "listen": ["presence"], "ref": ref}
                )
            )
            while True:
                frame = json.loads(await asyncio.wait_for(ws.recv(), REQUEST_TIMEOUT))
                if frame.get("type") == "presence_sync" and frame["channel"] == channel:
                    seen[channel] = {u["user_id"] for u in frame["users"]}
                elif frame.get("ref") == ref:
                    break
            if c % 50 == 49:
                await asyncio.sleep(0.5)  # under the gateway's frame rate (100/s)
    finally:
        await ws.close()
    return seen


async def presence_in_redis(client: aioredis.Redis, channels: int) -> dict[str, set[str]]:
    seen = {}
    for c in range(channels):
        members = await client.hkeys(f"presence:soak{c}")
        seen[f"soak{c}"] = {m.decode() for m in members}
    return seen


def diff(expected: dict[str, set[str]], seen: dict[str, set[str]]) -> list[str]:
    out = []
    for channel, users in expected.items():
        got = seen.get(channel, set())
        if got != users:
            out.append(f"{channel}: missing {sorted(users - got)}, extra {sorted(got - users)}")
    return out


async def check_presence(run: Run, client: aioredis.Redis) -> list[str]:
    """Wait (bounded) until presence everywhere matches the clients' own state; the last
    difference seen if it never does."""
    expected = await expected_presence(run)
    last: list[str] = []

    async def exact() -> bool:
        nonlocal last
        last = []
        for gateway in range(2):
            last += [
                f"gateway {gateway + 1} {d}"
                for d in diff(expected, await presence_seen(run, gateway))
            ]
        last += [
            f"redis {d}" for d in diff(expected, await presence_in_redis(client, run.args.channels))
        ]
        return not last

    with contextlib.suppress(TimeoutError):
        await wait_until_async(exact, timeout=30, interval=1.0, message="presence exact")
    return last


async def connections(run: Run) -> list[int]:
    """``/healthz``'s count of each gateway (a connection not kept alive: no fd left behind)."""
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT, limits=limits) as http:
        return [(await http.get(g.url + "/healthz")).json()["connections"] for g in run.gateways]


async def settle(what: str, predicate: Callable[[], Awaitable[bool] | bool], within: float) -> bool:
    try:
        await wait_until_async(predicate, timeout=within, interval=0.2, message=what)
        return True
    except TimeoutError:
        return False


def gateway_env(redis_url: str, extra: list[str]) -> dict[str, str]:
    return {
        "BROADCAST_MQ_TYPE": "redis",
        "PRESENCE_STORE": "redis",
        "REDIS_URL": redis_url,
        "LOG_LEVEL": "warning",
        **dict(item.split("=", 1) for item in extra),
    }


async def soak(
    args: argparse.Namespace, redis_url: str, redis_port: int, tmp: str
) -> dict[str, Any]:
    env = gateway_env(redis_url, args.env)
    async with (
        spawn_gateway(env, f"{tmp}/g1.log") as g1,
        spawn_gateway(env, f"{tmp}/g2.log") as g2,
    ):
        run = Run(args, [g1, g2], redis_port, Ledger(args.grace))
        redis_client = aioredis.Redis.from_url(redis_url)
        start = time.monotonic()
        idle = sample(run, start)
        print(f"gateways up: pids {g1.process.pid} {g2.process.pid}; fds with no client {idle.fds}")
        publishers = []
        for gateway in range(2):
            ws = await connect(run.url(gateway, f"publisher{gateway}"), compression=None)
            publishers.append(Conn(ws, run.failures, None))
        run.slots = [
            Slot(i, f"u{i // 2}", f"soak{(i // 2) % args.channels}", i % 2)
            for i in range(args.connections)
        ]
        ramp = asyncio.Semaphore(args.ramp)
        slot_tasks = [asyncio.create_task(slot_loop(run, s, ramp)) for s in run.slots]
        # 40 connections a second is about what this shared 2-core machine opened (with their
        # subscribe, presence sync and join); the bound is four times slower than that.
        ramp_bound = max(60.0, args.connections / 10)
        if not await settle("all connected", lambda: all(s.conn for s in run.slots), ramp_bound):
            run.failures.add("ramp", f"not every slot connected within {ramp_bound:.0f} s")
        churn_start = time.monotonic()
        print(f"{args.connections} connections after {churn_start - start:.1f} s")
        sampling = asyncio.create_task(sampler(run, start))
        # A new connection per HTTP publish. A kept-alive one raced uvicorn's close of idle
        # connections (5 s after it sent the last response): retiring them after 2 s was not
        # enough, as the driver's clock starts when it reads the response, and a driver starved
        # of CPU reads late and writes its next request late; a request written as the server
        # closes is reset unread (httpx's ReadError, no answer: twice in the 10-minute run).
        # That is HTTP/1.1's keep-alive race, a client's to retry, not the gateway's loss.
        http = httpx.AsyncClient(
            timeout=REQUEST_TIMEOUT, limits=httpx.Limits(max_keepalive_connections=0)
        )
        publishing = asyncio.create_task(publish_loop(run, http, publishers))
        await asyncio.sleep(args.warmup)
        warm = sample(run, start)
        warm_conns = await connections(run)
        print(
            f"warm-up over at {warm.t:.0f} s: RSS MB {[k // 1024 for k in warm.rss_kb]}"
            f" fds {warm.fds} connections {warm_conns}"
        )
        await asyncio.sleep(max(0.0, churn_start + args.duration - time.monotonic()))
        print("stopping churn")
        run.churning = False
        await asyncio.gather(*slot_tasks)
        publishing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await publishing
        await http.aclose()
        sampling.cancel()
        ended = time.monotonic()

        def all_open_received() -> bool:
            return not run.ledger.audit()[1]

        delivered = await settle("deliveries in", all_open_received, 30)
        owed, lost = run.ledger.audit()
        end = sample(run, start)
        end_conns = await connections(run)
        print(
            f"end: fds {end.fds} connections {end_conns} (deliveries settled: {delivered},"
            f" {time.monotonic() - ended:.1f} s)"
        )
        presence_diffs = await check_presence(run, redis_client)
        for slot in run.slots:
            if slot.conn is not None:
                await close_session(run, slot)
        for conn in publishers:
            await conn.close()

        async def none_left() -> bool:
            return await connections(run) == [0, 0]

        drained = await settle("0 connections", none_left, 30)
        everyone = {f"soak{c}": set[str]() for c in range(args.channels)}

        leftover: list[str] = []

        async def presence_empty() -> bool:
            nonlocal leftover
            leftover = diff(everyone, await presence_in_redis(redis_client, args.channels))
            return not leftover

        closed_at = time.monotonic()
        emptied = await settle("presence empty", presence_empty, 30)
        if not emptied:
            first_leftover = leftover
            for line in first_leftover[:3]:  # what Redis holds for them, before it reaps them
                channel = line.split(":", 1)[0]
                keys = [f"presence:{channel}"] + [
                    f"{{presence:{channel}}}:{k}" for k in ("expiry", "conns", "count")
                ]
                state = [
                    await redis_client.hgetall(keys[0]),
                    await redis_client.zrange(keys[1], 0, -1, withscores=True),
                    await redis_client.zrange(keys[2], 0, -1, withscores=True),
                    await redis_client.hgetall(keys[3]),
                    await redis_client.time(),
                ]
                print(f"  redis {channel}: {state}")
            # Say whether the members ever go (reaped after their TTL) or stay.
            gone = await settle("presence empty", presence_empty, 90)
            print(
                f"presence not empty 30 s after the last close: {first_leftover[:10]};"
                f" {'empty' if gone else 'still not empty'} after"
                f" {time.monotonic() - closed_at:.0f} s"
            )
            leftover = first_leftover

        def no_client_fd() -> bool:
            return not any(k["clients"] for k in sample(run, start).fd_kinds)

        # The gateway closes its side once it has read the client's close: a moment later.
        await settle("no client fd", no_client_fd, 10)
        closed = sample(run, start)
        await redis_client.aclose()
        logs = [g.log() for g in run.gateways]
        for g, log in enumerate(logs):  # the temporary directory goes: keep them beside the result
            args.out.with_suffix(f".g{g + 1}.log").write_text(log)
    sessions = run.ledger.sessions
    return {
        "owed": owed,
        "lost": len(lost),
        "lost_first": lost[:20],
        "duplicates": sum(s.duplicates for s in sessions),
        "foreign": sum(s.foreign for s in sessions),
        "received": sum(len(s.received) for s in sessions),
        "publishes": len(run.ledger.publishes),
        "publishes_answered": sum(p.acked is not None for p in run.ledger.publishes.values()),
        "sessions": len(sessions),
        "presence_toggles": run.presence_toggles,
        "failures": run.failures.counts,
        "failure_examples": run.failures.examples,
        "presence_diffs": presence_diffs[:20],
        "connections_warm": warm_conns,
        "connections_end": end_conns,
        "drained_to_zero": drained,
        "presence_emptied": emptied,
        "presence_left_after_close": leftover[:20],
        "idle": idle.__dict__,
        "warm": warm.__dict__,
        "end": end.__dict__,
        "closed": closed.__dict__,
        "samples": [s.__dict__ for s in run.samples],
        "error_log_lines": [
            [line for line in log.splitlines() if "ERROR" in line or "Traceback" in line][:10]
            for log in logs
        ],
    }


def verdict(result: dict[str, Any], args: argparse.Namespace) -> list[str]:
    failed = []
    for key in ("lost", "duplicates", "foreign"):
        if result[key]:
            failed.append(f"{key}: {result[key]} (first: {result.get('lost_first', '')})")
    if result["owed"] == 0:
        failed.append("no delivery was owed: the run proved nothing")
    if result["failures"]:
        failed.append(f"errors: {result['failures']} e.g. {result['failure_examples']}")
    if result["presence_diffs"]:
        failed.append(f"presence not exact: {result['presence_diffs']}")
    if not result["drained_to_zero"] or not result["presence_emptied"]:
        failed.append("after every client closed: connections or presence not back to none")
    warm, end, idle, closed = (result[k] for k in ("warm", "end", "idle", "closed"))
    after = [s for s in result["samples"] if s["t"] >= warm["t"]] + [end]
    for g in range(2):
        name = f"gateway {g + 1}"
        peak = max(s["rss_kb"][g] for s in after)
        growth = (peak - warm["rss_kb"][g]) / 1024
        if growth > args.rss_bound_mb:
            failed.append(f"{name} RSS grew {growth:.1f} MB after warm-up")
        # Client sockets: as many as the connections the gateway counts (at the end nothing
        # else is connected to it); at the warm-up's end churn leaves some slots between
        # sessions, so the count is compared with /healthz's, not with the warm-up's.
        sockets, conns = end["fd_kinds"][g]["clients"], result["connections_end"][g]
        if abs(sockets - conns) > args.fd_bound:
            failed.append(f"{name} has {sockets} client sockets for {conns} connections")
        # Everything but sockets: no reason to change while the gateway serves. Redis
        # connections are the client library's pool, reported (it follows peak concurrency).
        before, now = warm["fd_kinds"][g]["other"], end["fd_kinds"][g]["other"]
        if abs(now - before) > args.fd_bound:
            failed.append(f"{name} other fds {before} after warm-up, {now} at end")
        if closed["fd_kinds"][g]["clients"]:
            failed.append(f"{name} holds {closed['fd_kinds'][g]['clients']} client fds at the end")
        before, now = idle["fd_kinds"][g]["other"], closed["fd_kinds"][g]["other"]
        if now - before > args.fd_bound:
            failed.append(f"{name} non-socket fds {before} before the first client, {now} after")
    if result["error_log_lines"] != [[], []]:
        failed.append(f"gateway log errors: {result['error_log_lines']}")
    return failed


def report(result: dict[str, Any], args: argparse.Namespace) -> None:
    warm, end, idle, closed = (result[k] for k in ("warm", "end", "idle", "closed"))
    after = [s for s in result["samples"] if s["t"] >= warm["t"]] + [end]
    print(
        f"\nsoak: {args.connections} connections, {args.channels} channels, {args.duration} s"
        f" ({args.warmup} s warm-up), {args.rate} publishes/s, mean lifetime {args.lifetime} s"
    )
    print(
        f"  sessions {result['sessions']}  presence leave/join {result['presence_toggles']}"
        f"  publishes {result['publishes']} answered {result['publishes_answered']}"
    )
    print(
        f"  deliveries owed {result['owed']}  lost {result['lost']}  duplicates"
        f" {result['duplicates']}  wrong channel {result['foreign']}"
        f"  received in all {result['received']}"
    )
    for g in range(2):
        rss = [s["rss_kb"][g] / 1024 for s in after]
        print(
            f"  gateway {g + 1}: RSS MB idle {idle['rss_kb'][g] / 1024:.1f}, after warm-up"
            f" {warm['rss_kb'][g] / 1024:.1f}, max after {max(rss):.1f}, end"
            f" {end['rss_kb'][g] / 1024:.1f} (bound +{args.rss_bound_mb} MB)"
        )
        print(
            "    fds (clients/redis/other): "
            + ", ".join(
                f"{label} {'/'.join(str(v) for v in point['fd_kinds'][g].values())}"
                for label, point in (
                    ("idle", idle),
                    ("warm", warm),
                    ("end", end),
                    ("closed", closed),
                )
            )
            + f"; max redis {max(s['fd_kinds'][g]['redis'] for s in result['samples'] + [end])}"
            + f" (bound {args.fd_bound})"
        )
    print(
        f"  connections after warm-up {result['connections_warm']}, at end"
        f" {result['connections_end']}; errors {result['failures'] or 'none'}"
    )


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--duration", type=float, default=600, help="seconds of churn (600)")
    p.add_argument("--connections", type=int, default=1000, help="open at any time (1000)")
    p.add_argument("--channels", type=int, default=100, help="channels (100)")
    p.add_argument("--rate", type=float, default=20, help="publishes a second (20)")
    p.add_argument("--lifetime", type=float, default=120, help="mean seconds a session lives (120)")
    p.add_argument(
        "--presence-every",
        type=float,
        default=30,
        help="mean seconds between a session's presence leave/join (30)",
    )
    p.add_argument(
        "--warmup",
        type=float,
        help="seconds before RSS and fds are the reference"
        " (default: a quarter of --duration, at most 120)",
    )
    p.add_argument(
        "--grace",
        type=float,
        default=5,
        help="a closing session is owed publishes answered this long before (5)",
    )
    p.add_argument("--rss-bound-mb", type=float, default=8, help="RSS growth after warm-up (8)")
    p.add_argument("--fd-bound", type=int, default=4, help="fd difference allowed (4)")
    p.add_argument("--sample", type=float, default=10, help="seconds between samples (10)")
    p.add_argument("--ramp", type=int, default=50, help="connections opening at once (50)")
    p.add_argument("--env", action="append", default=[], help="gateway setting NAME=VALUE")
    p.add_argument("--out", type=Path, help="result file (default bench/results/soak-<ts>.json)")
    args = p.parse_args(argv)
    if args.warmup is None:
        args.warmup = min(120.0, args.duration / 4)
    if not 0 < args.warmup < args.duration or args.connections < 2 or args.connections % 2:
        p.error("need 0 < --warmup < --duration and an even --connections >= 2")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    started = datetime.datetime.now(datetime.UTC)
    args.out = args.out or RESULTS / f"soak-{started:%Y%m%dT%H%M%SZ}.json"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # progress, live
    with redis_server() as redis, tempfile.TemporaryDirectory() as tmp:
        result = uvloop.run(soak(args, redis.url, redis.port, tmp))
    report(result, args)
    failed = verdict(result, args)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    out = args.out
    out.write_text(
        json.dumps(
            {
                "started": started.isoformat(),
                "commit": commit.strip(),
                "args": vars(args) | {"out": str(out)},
                "machine": {
                    "cpus": os.cpu_count(),
                    "kernel": platform.release(),
                    "python": sys.version,
                },
                "load_average_end": os.getloadavg(),
                "failed": failed,
                **result,
            },
            indent=1,
            default=str,
        )
    )
    print(f"  results: {out}; load average now {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    for line in failed:
        print(f"FAILED {line}")
    print("soak: FAILED" if failed else "soak: passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
