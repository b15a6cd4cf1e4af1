"""Peers in the benchmark: the same scenarios against Centrifugo and the Go seed, in the
same run as realtime-mq, so that every figure is a ratio (issue #14, item 3).

    python -m bench --peers centrifugo,seed --seed-source PATH
    python -m bench --peers centrifugo --scenarios F1 --quick

Each peer is pinned to the server core with GOMAXPROCS=1, as realtime-mq is pinned to it
with its one event loop. Peers that cannot be built (no Go toolchain, no network for the
module, no seed source) are skipped with a message; the run goes on with the others.
See bench/README.md ("Peers").
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import run
from bench.run import HOST, Plan, Server
from realtime.testing.waiting import free_port

# Built binaries, kept between runs (gitignored): Centrifugo takes minutes to build.
CACHE = run.BENCH / ".peers"
CENTRIFUGO_MODULE = "github.com/centrifugal/centrifugo/v6"
CENTRIFUGO_VERSION = "v6.9.1"
# Where the seed's source is fetched from when --seed-source is not given.
SEED_REPO = "https://github.com/monoposer/lowcode-realtime"
PEERS = ("centrifugo", "seed")
TARGETS = ("realtime", *PEERS)
BUILD_TIMEOUT = 1800.0


@dataclass(frozen=True)
class Case:
    """One row of the side-by-side table: a scenario on one broker and publish path."""

    key: str
    label: str
    scenario: str  # F1 | F2 | C1
    window: int
    broker: str  # memory | redis
    publish: str  # the loadgen's -publish: ws | http | http-pool | http-pipe


# The rows of issue #14's table. F2 and C1 publish over HTTP on Redis because that is the
# one path all three serve (the seed's WebSocket publish is broken, and it needs Redis).
CASES = (
    Case("F1-w2-memory-ws", "F1 W=2, memory, WebSocket publish", "F1", 2, "memory", "ws"),
    Case("F1-w10-memory-ws", "F1 W=10, memory, WebSocket publish", "F1", 10, "memory", "ws"),
    Case("F1-w10-redis-ws", "F1 W=10, Redis, WebSocket publish", "F1", 10, "redis", "ws"),
    Case(
        "F1-w10-redis-pool8",
        "F1 W=10, Redis, HTTP publish, 8 keep-alive publishers",
        "F1",
        10,
        "redis",
        "http-pool",
    ),
    Case(
        "F1-w10-redis-pipe",
        "F1 W=10, Redis, HTTP publish, one pipelined connection",
        "F1",
        10,
        "redis",
        "http-pipe",
    ),
    Case("F2-redis-http", "F2 20/s (Redis, HTTP publish)", "F2", 0, "redis", "http"),
    Case("C1-redis", "C1 idle subscribed connections (Redis)", "C1", 0, "redis", "http"),
)


def serves(target: str, case: Case) -> bool:
    """Whether a target can run a case: the seed needs Redis, and its WebSocket publish is
    broken (it drops client broadcasts), so it only takes HTTP publishes."""
    if target == "seed":
        return case.broker == "redis" and case.publish != "ws"
    return True


# (label, how to read it from a scenario result, which way is better); run.METRICS' readers.
PeerMetric = tuple[str, Callable[[dict[str, Any]], float | None], str]
CASE_METRICS: dict[str, list[PeerMetric]] = {
    "F1": [
        ("deliveries/s", run._lg("deliveries_per_s"), "higher"),
        ("latency p50 ms", run._lg("latency_ms", "p50"), "lower"),
        ("latency p99 ms", run._lg("latency_ms", "p99"), "lower"),
        ("lost", run._lg("lost"), "lower"),
        ("publish errors", run._lg("pub_errors"), "lower"),
        ("server CPU %", run._srv("server_cpu_pct"), "-"),
        ("other load on server core %", run._lg("server_core_other_pct"), "-"),
        ("loadgen CPU %", run._lg("loadgen_cpu_pct"), "-"),
    ],
    "F2": [
        ("latency p50 ms", run._lg("latency_ms", "p50"), "lower"),
        ("latency p99 ms", run._lg("latency_ms", "p99"), "lower"),
        ("latency max ms", run._lg("latency_ms", "max"), "lower"),
        ("lost", run._lg("lost"), "lower"),
        ("server CPU %", run._srv("server_cpu_pct"), "lower"),
        ("other load on server core %", run._lg("server_core_other_pct"), "-"),
    ],
    "C1": [
        ("connections", run._lg("ready"), "higher"),
        ("connect s", run._lg("connect_s"), "lower"),
        ("RSS KiB/conn", run._srv("rss_kb_per_conn"), "lower"),
        ("idle server CPU %", run._srv("idle_server_cpu_pct"), "lower"),
    ],
}


# ---------------------------------------------------------------- building the peers


class Skip(Exception):
    """A peer that cannot be built or started here: reported, and the run goes on."""


def _go() -> str:
    go = shutil.which("go")
    if go is None:
        raise Skip("no Go toolchain on PATH")
    return go


def _build(cmd: list[str], cwd: Path | None, env: dict[str, str], what: str) -> None:
    try:
        p = subprocess.run(
            cmd,
            cwd=cwd,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        raise Skip(f"building {what} took over {BUILD_TIMEOUT:.0f} s") from None
    if p.returncode != 0:
        tail = (p.stderr or p.stdout).strip().splitlines()[-3:]
        raise Skip(f"building {what} failed: {' / '.join(tail)}")


def centrifugo_binary(cache: Path | None = None) -> Path:
    """Centrifugo at the pinned version, built once with `go install` and cached."""
    out = (cache or CACHE) / f"centrifugo-{CENTRIFUGO_VERSION}"
    exe = out / "centrifugo"
    if exe.exists():
        return exe
    go = _go()
    out.mkdir(parents=True, exist_ok=True)
    print(f"building Centrifugo {CENTRIFUGO_VERSION} once (minutes) ...", file=sys.stderr)
    _build(
        [go, "install", f"{CENTRIFUGO_MODULE}@{CENTRIFUGO_VERSION}"],
        None,
        {"GOBIN": str(out), "CGO_ENABLED": "0"},
        f"Centrifugo {CENTRIFUGO_VERSION}",
    )
    if not exe.exists():
        raise Skip(f"go install left no binary in {out}")
    return exe


def seed_source_kind(path: Path) -> str:
    """'git' for a (bare) git directory, 'tree' for a checked-out source tree."""
    if (path / "go.mod").is_file() and (path / "cmd" / "server").is_dir():
        return "tree"
    if (path / "HEAD").is_file() and (path / "objects").is_dir():
        return "git"
    if (path / ".git").exists() and (path / "go.mod").is_file():
        return "tree"
    raise Skip(f"{path} is neither the seed's source tree nor a git directory of it")


def _tree_digest(path: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(path.rglob("*")):
        if f.is_file() and ".git" not in f.relative_to(path).parts:
            h.update(str(f.relative_to(path)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:12]


def seed_binary(source: Path | None, cache: Path | None = None) -> Path:
    """The Go seed built from its source: a git directory (its HEAD is archived), a source
    tree, or, with no source given, a shallow clone of SEED_REPO."""
    go = _go()
    with tempfile.TemporaryDirectory(prefix="seed-src-") as tmp:
        src = Path(tmp) / "src"
        if source is None:
            print(f"fetching the seed's source from {SEED_REPO} ...", file=sys.stderr)
            try:
                p = subprocess.run(
                    ["git", "clone", "-q", "--depth", "1", SEED_REPO, str(src)],
                    capture_output=True,
                    text=True,
                    timeout=120,
                    env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
                )
            except (OSError, subprocess.TimeoutExpired) as e:
                raise Skip(f"cannot fetch the seed ({e}); pass --seed-source") from None
            if p.returncode != 0:
                raise Skip(f"cannot fetch the seed ({p.stderr.strip()}); pass --seed-source")
            source = src
        kind = seed_source_kind(source)
        if kind == "git":
            rev = subprocess.run(
                ["git", "--git-dir", str(source), "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                check=False,
            ).stdout.strip()
            if not rev:
                raise Skip(f"{source}: no HEAD commit")
            key = rev[:12]
        else:
            key = _tree_digest(source)
        exe = (cache or CACHE) / f"seed-{key}" / "seed"
        if exe.exists():
            return exe
        if kind == "git":
            src.mkdir(exist_ok=True)
            archive = subprocess.run(
                ["git", "--git-dir", str(source), "archive", "HEAD"], capture_output=True
            )
            if archive.returncode != 0:
                raise Skip(f"git archive of {source} failed")
            subprocess.run(["tar", "-x", "-C", str(src)], input=archive.stdout, check=True)
            build_dir = src
        else:
            build_dir = source
        exe.parent.mkdir(parents=True, exist_ok=True)
        print(f"building the Go seed ({key}) ...", file=sys.stderr)
        _build([go, "build", "-o", str(exe), "./cmd/server"], build_dir, {}, "the Go seed")
    return exe


# ---------------------------------------------------------------- the peers' servers


def centrifugo_config(port: int, redis_url: str | None) -> dict[str, Any]:
    """Centrifugo's configuration for the benchmark only: no authentication at all
    (client.insecure, an open server API), clients may publish, logs at error level."""
    cfg: dict[str, Any] = {
        "http_server": {"address": HOST, "port": port},
        "log": {"level": "error"},
        "client": {"insecure": True},
        "http_api": {"insecure": True},
        "channel": {
            "without_namespace": {
                "allow_subscribe_for_client": True,
                "allow_publish_for_client": True,
            }
        },
    }
    if redis_url:
        cfg["engine"] = {"type": "redis", "redis": {"address": [redis_url]}}
    return cfg


# Go peers get one OS thread running Go code, as realtime-mq has one event loop.
GO_ENV = {"GOMAXPROCS": "1"}


def peer_server(
    target: str, exe: Path, redis_url: str | None, cpu: str, workdir: Path
) -> tuple[Server, str]:
    """A peer's Server and the WebSocket path its subscribers connect to."""
    port = free_port()
    if target == "centrifugo":
        conf = workdir / f"centrifugo-{port}.json"
        conf.write_text(json.dumps(centrifugo_config(port, redis_url), indent=2))
        return Server(target, [str(exe), "--config", str(conf)], GO_ENV, port, cpu), (
            "/connection/websocket"
        )
    if redis_url is None:
        raise ValueError("the seed runs on Redis only")
    env = {
        **GO_ENV,
        **run.redis_env(redis_url),
        "SERVER_ADDR": f"{HOST}:{port}",
        "GIN_MODE": "release",
    }
    return Server(target, [str(exe)], env, port, cpu), "/ws"


def url_args(server: Server, ws_path: str, proto: str) -> list[str]:
    """Loadgen flags for a target: its protocol and URLs. They come after run.scenario_args'
    own -url/-pub-url, and the last of a repeated Go flag wins."""
    url = f"ws://{HOST}:{server.port}{ws_path}"
    return ["-proto", proto, "-url", url, "-pub-url", url]


# ---------------------------------------------------------------- the report


def best_peer(values: dict[str, float | None], better: str) -> tuple[str, float] | None:
    """The best peer's figure on a metric (highest or lowest), or None without peers."""
    peers = [(t, v) for t, v in values.items() if t != "realtime" and v is not None]
    if not peers or better not in ("higher", "lower"):
        return None
    pick = max if better == "higher" else min
    return pick(peers, key=lambda tv: tv[1])


def summarize(cases: dict[str, dict[str, Any]], selected: Sequence[Case]) -> list[dict[str, Any]]:
    rows = []
    for case in selected:
        entry = cases.get(case.key)
        if entry is None:
            continue
        for label, get, better in CASE_METRICS[case.scenario]:
            row: dict[str, Any] = {"case": case.key, "label": case.label, "metric": label}
            row["better"] = better
            values: dict[str, float | None] = {}
            for t in TARGETS:
                runs = entry["targets"].get(t, {}).get("runs", [])
                got = [v for r in runs if not r.get("error") and (v := get(r)) is not None]
                values[t] = statistics.median(got) if got else None
                row[t] = values[t]
                row[f"{t}_runs"] = got
            best = best_peer(values, better)
            rt = values["realtime"]
            row["best_peer"] = best[0] if best else None
            row["ratio"] = rt / best[1] if best and best[1] and rt is not None else None
            rows.append(row)
    return rows


def print_table(rows: list[dict[str, Any]], cases: dict[str, dict[str, Any]]) -> None:
    head = ["metric", *TARGETS, "realtime/best peer", "better"]
    last = None
    body: list[list[str]] = []
    titles: dict[int, str] = {}
    for r in rows:
        if r["case"] != last:
            titles[len(body)] = r["label"]
            last = r["case"]
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}x ({r['best_peer']})"
        body.append([r["metric"], *(run._fmt(r[t]) for t in TARGETS), ratio, r["better"]])
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head))]
    line = "  ".join("-" * w for w in widths)
    print(line)
    print("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)))
    print(line)
    for i, cells in enumerate(body):
        if i in titles:
            print(f"{'' if i == 0 else chr(10)}{titles[i]}")
        pairs = enumerate(zip(cells, widths, strict=True))
        print("  ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in pairs))
    print(line)
    for key, entry in cases.items():
        for t, tres in entry["targets"].items():
            for i, res in enumerate(tres["runs"]):
                lg = res.get("loadgen", {})
                if res.get("error"):
                    print(f"{key} {t} run {i + 1}: ERROR {res['error']}")
                if (other := lg.get("server_core_other_pct") or 0) > 10:
                    print(
                        f"{key} {t} run {i + 1}: other processes took {other:.0f} % of the "
                        "server's core: noisy"
                    )
                if (lg_cpu := lg.get("loadgen_cpu_pct") or 0) > 80:
                    print(f"{key} {t} run {i + 1}: loadgen at {lg_cpu:.0f} % of its core")


# ---------------------------------------------------------------- main


def parse_peers(spec: str) -> list[str]:
    peers = [p.strip().lower() for p in spec.split(",") if p.strip()]
    if bad := [p for p in peers if p not in PEERS]:
        raise SystemExit(f"bench: unknown peer(s) {bad}; choose from {', '.join(PEERS)}")
    return list(dict.fromkeys(peers))


def select_cases(scenarios: Sequence[str], keys: str | None = None) -> list[Case]:
    """The table's rows of those scenarios, and of those keys when given."""
    chosen = [c for c in CASES if c.scenario in scenarios]
    if keys:
        wanted = [k.strip() for k in keys.split(",") if k.strip()]
        if bad := [k for k in wanted if k not in {c.key for c in CASES}]:
            raise SystemExit(
                f"bench: unknown case(s) {bad}; choose from {', '.join(c.key for c in CASES)}"
            )
        chosen = [c for c in chosen if c.key in wanted]
    return chosen


def build_peers(peers: Sequence[str], seed_source: Path | None) -> dict[str, Path]:
    """Each peer's binary; a peer that cannot be built is skipped with one line saying why."""
    built: dict[str, Path] = {}
    for peer in peers:
        try:
            built[peer] = centrifugo_binary() if peer == "centrifugo" else seed_binary(seed_source)
        except Skip as e:
            print(f"bench: skipping {peer}: {e}", file=sys.stderr)
    return built


@contextlib.contextmanager
def _redis(args: argparse.Namespace, needed: bool) -> Iterator[str | None]:
    if not needed:
        yield None
    elif args.redis_url:
        yield args.redis_url
    elif shutil.which("redis-server") is None:
        print("bench: no redis-server on PATH: the Redis rows are skipped", file=sys.stderr)
        yield None
    else:
        with run.local_redis(args.server_cpu) as url:
            yield url


def main(args: argparse.Namespace) -> int:
    """`python -m bench --peers ...`: run.parse_args' namespace."""
    peers = parse_peers(args.peers)
    given = [s.strip().upper() for s in args.scenarios.split(",") if s.strip()]
    # F3 is not one of the table's rows; the default runs F1, F2 and C1.
    scenarios = ["F1", "F2", "C1"] if args.scenarios == ",".join(run.SCENARIOS) else given
    selected = select_cases(scenarios, args.cases)
    if not selected:
        sys.exit("bench: --peers runs F1, F2 and C1; choose among those with --scenarios/--cases")
    q = args.quick
    if not args.no_build:
        run.build_loadgen()
    built = build_peers(peers, args.seed_source)
    if not built:
        print("bench: no peer could be built: realtime-mq alone, no ratios", file=sys.stderr)

    started = dt.datetime.now(dt.UTC)
    report: dict[str, Any] = {
        "schema": 1,
        "kind": "peers",
        "started": started.isoformat(timespec="seconds"),
        "git": {
            "commit": run._git("rev-parse", "HEAD"),
            "branch": run._git("rev-parse", "--abbrev-ref", "HEAD"),
            "dirty": bool(run._git("status", "--porcelain")),
        },
        "machine": {
            "cpus": os.cpu_count(),
            "kernel": platform.release(),
            "python": platform.python_version(),
        },
        "peers": {p: str(exe) for p, exe in built.items()},
        "centrifugo_version": CENTRIFUGO_VERSION,
        "cases": {},
    }
    with contextlib.ExitStack() as stack:
        redis_url = stack.enter_context(_redis(args, any(c.broker == "redis" for c in selected)))
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-peers-")))
        runnable = [c for c in selected if c.broker == "memory" or redis_url]
        # One set of servers per target and broker; each scenario run starts them afresh.
        servers: dict[tuple[str, str], tuple[list[Server], list[str]]] = {}
        for broker in sorted({c.broker for c in runnable}):
            url = redis_url if broker == "redis" else None
            servers[("realtime", broker)] = (run.make_servers("realtime", args, url), [])
            for peer, exe in built.items():
                if any(serves(peer, c) for c in runnable if c.broker == broker):
                    proto = "centrifugo" if peer == "centrifugo" else "realtime"
                    one, path = peer_server(peer, exe, url, args.server_cpu, workdir)
                    servers[(peer, broker)] = ([one], url_args(one, path, proto))
        report["settings"] = {
            "scenarios": scenarios,
            "repeat": args.repeat,
            "quick": q,
            "server_cpu": args.server_cpu,
            "loadgen_cpu": args.loadgen_cpu,
            "redis": redis_url is not None,
            "cases": [c.key for c in runnable],
        }
        for case in runnable:
            plan = run.plan_from(args, case.window, case.publish)
            entry: dict[str, Any] = {"label": case.label, "targets": {}}
            report["cases"][case.key] = entry
            targets = [t for t in TARGETS if (t, case.broker) in servers and serves(t, case)]
            # Targets take turns within each repeat, so outside load hits them alike.
            for rep in range(args.repeat):
                for t in targets:
                    srv, extra = servers[(t, case.broker)]
                    print(
                        f"[{t}] {case.key} run {rep + 1}/{args.repeat} ...",
                        file=sys.stderr,
                        flush=True,
                    )
                    p = Plan(**{**vars(plan), "extra": [*plan.extra, *extra]})
                    t0 = time.monotonic()
                    res = run.run_scenario(case.scenario, p, srv, args.loadgen_cpu)
                    res["wall_s"] = round(time.monotonic() - t0, 1)
                    tres = entry["targets"].setdefault(t, {"command": srv[0].cmd, "runs": []})
                    tres["runs"].append(res)
                    if res.get("error"):
                        print(f"[{t}] {case.key} failed: {res['error']}", file=sys.stderr)

    report["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    report["summary"] = summarize(report["cases"], selected)
    out = args.out or run.RESULTS / f"peers-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report["summary"], report["cases"])
    print(f"results: {out}")
    failed = any(
        r.get("error")
        for e in report["cases"].values()
        for tr in e["targets"].values()
        for r in tr["runs"]
    )
    return 1 if failed else 0
