"""Benchmark runner: builds the load generator, runs each scenario against a
fresh server pinned to one core, prints a comparison table and writes JSON.

    python -m bench                       # both targets, F1 F2 C1 F3 (2-3 min)
    python -m bench --quick               # smoke run (~40 s)
    python -m bench --target baseline --scenarios F1,F2
    python -m bench --target realtime --start-redis --two-instances

See bench/README.md for what each scenario measures.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import queue
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from realtime.testing.waiting import free_port, port_open, wait_until

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
LOADGEN_DIR = BENCH / "loadgen"
LOADGEN = LOADGEN_DIR / "loadgen"
RESULTS = BENCH / "results"

# How the gateway under test is started: change it here (or with --realtime-cmd).
# "{port}" is replaced by the port; the gateway also gets SERVER_ADDR.
REALTIME_COMMAND = [sys.executable, "-m", "realtime"]
# uvicorn settings for the baseline: the ones realtime.cli.server_options uses.
UVICORN_FLAGS = [
    "--loop",
    "uvloop",
    "--http",
    "httptools",
    "--ws",
    "websockets-sansio",
    "--ws-per-message-deflate",
    "False",
    "--log-level",
    "warning",
    "--no-access-log",
]
BASELINE_COMMAND = [
    sys.executable,
    "-m",
    "uvicorn",
    "bench.baseline_hub:app",
    "--host",
    "127.0.0.1",
    "--port",
    "{port}",
    *UVICORN_FLAGS,
]
HOST = "127.0.0.1"
# Put before every loadgen command (bench/scale.py puts the loadgen in a CPU-capped cgroup).
LOADGEN_WRAP: list[str] = []
SCENARIOS = ("F1", "F2", "C1", "F3")
TARGETS = ("baseline", "realtime")


# ---------------------------------------------------------------- processes


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    def listening() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} before listening")
        return port_open(HOST, port)

    try:
        wait_until(listening, timeout, interval=0.1, message=f"server listening on {HOST}:{port}")
    except TimeoutError as e:
        # Callers report a RuntimeError with the server's log tail.
        raise RuntimeError(str(e)) from None


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _tree(pid: int) -> list[int]:
    """pid and its descendants (a gateway may run workers)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                todo.extend(int(c) for c in task.read_text().split())
    return out


def rss_kb(pid: int) -> int:
    total = 0
    for p in _tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def cpu_seconds(pid: int) -> float:
    ticks = 0
    for p in _tree(pid):
        with contextlib.suppress(OSError, IndexError, ValueError):
            # Fields after the ")" of comm: utime and stime are the 12th and 13th.
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


@dataclass
class Server:
    name: str
    cmd: list[str]
    env: dict[str, str]
    port: int
    cpu: str
    proc: subprocess.Popen[bytes] | None = None
    log: Any = None

    def start(self, timeout: float = 30.0) -> None:
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - lives until stop()
        env = {**os.environ, **self.env}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        cmd = [c.replace("{port}", str(self.port)) for c in self.cmd]
        self.proc = subprocess.Popen(
            ["taskset", "-c", self.cpu, *cmd],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            preexec_fn=_raise_nofile,
            start_new_session=True,
        )
        try:
            wait_port(self.port, self.proc, timeout)
        except RuntimeError as e:
            raise RuntimeError(f"{self.name}: {e}\n{self.log_tail()}") from None

    def log_tail(self, n: int = 2000) -> str:
        if self.log is None:
            return ""
        self.log.seek(0)
        return str(self.log.read()[-n:].decode(errors="replace"))

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        if self.log is not None:
            self.log.close()
        self.proc, self.log = None, None


@contextlib.contextmanager
def running(servers: Sequence[Server]) -> Iterator[None]:
    try:
        for s in servers:
            s.start()
        yield
    finally:
        for s in reversed(servers):
            s.stop()


# ---------------------------------------------------------------- loadgen


def build_loadgen() -> None:
    go = shutil.which("go")
    if go is None:
        if LOADGEN.exists():
            print("warning: no Go toolchain; using the existing loadgen binary", file=sys.stderr)
            return
        sys.exit("bench: the Go toolchain is needed to build bench/loadgen")
    print("building bench/loadgen ...", file=sys.stderr)
    subprocess.run([go, "build", "-o", str(LOADGEN), "."], cwd=LOADGEN_DIR, check=True)


def _last_json(text: str) -> dict[str, Any]:
    for line in reversed(text.strip().splitlines()):
        with contextlib.suppress(ValueError):
            obj = json.loads(line)
            if isinstance(obj, dict):
                return obj
    raise RuntimeError(f"loadgen printed no JSON: {text[-500:]!r}")


def run_loadgen(cpu: str, args: list[str], timeout: float) -> dict[str, Any]:
    cmd = [*LOADGEN_WRAP, "taskset", "-c", cpu, str(LOADGEN), *args, "-timeout", f"{timeout:.0f}s"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 15)
    res = _last_json(p.stdout)
    if p.returncode != 0 and "error" not in res:
        res["error"] = f"loadgen exit {p.returncode}: {p.stderr[-500:]}"
    return res


def run_idle(
    cpu: str,
    args: list[str],
    timeout: float,
    server_pids: list[int],
    settle: float,
    idle_window: float,
) -> dict[str, Any]:
    """C1: hold idle connections and read the servers' RSS and CPU meanwhile."""
    rss_before = sum(rss_kb(p) for p in server_pids)
    cmd = [*LOADGEN_WRAP, "taskset", "-c", cpu, str(LOADGEN), *args, "-timeout", f"{timeout:.0f}s"]
    p = subprocess.Popen(
        cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert p.stdout is not None and p.stdin is not None
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert p.stdout is not None
        for line in p.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    out: list[str] = []
    ready = False
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            out.append(line)
            with contextlib.suppress(ValueError):
                if json.loads(line).get("ready"):
                    ready = True
                    break
        extra: dict[str, Any] = {}
        if ready:
            time.sleep(settle)
            rss_after = sum(rss_kb(pid) for pid in server_pids)
            cpu0, t0 = sum(cpu_seconds(pid) for pid in server_pids), time.monotonic()
            time.sleep(idle_window)
            cpu1, t1 = sum(cpu_seconds(pid) for pid in server_pids), time.monotonic()
            extra = {
                "rss_kb_before": rss_before,
                "rss_kb_after": rss_after,
                "idle_server_cpu_pct": 100 * (cpu1 - cpu0) / (t1 - t0),
            }
        p.stdin.close()
        p.wait(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    while (line := lines.get(timeout=5)) is not None:
        out.append(line)
    res = _last_json("".join(out))
    res.update(extra)
    if not ready and "error" not in res:
        res["error"] = "idle loadgen never became ready"
    if extra and res.get("connected"):
        res["rss_kb_per_conn"] = (extra["rss_kb_after"] - rss_before) / res["connected"]
    return res


# ---------------------------------------------------------------- scenarios


@dataclass
class Plan:
    """Sizes of every scenario, from the command line."""

    subs: int
    duration: float
    rate: float
    window: int
    idle_conns: int
    channel_conns: int
    channel_rate: float
    drain: float
    publish: str
    extra: list[str] = field(default_factory=list)


def plan_from(args: argparse.Namespace, window: int, publish: str) -> Plan:
    """The sizes the command line asks for (``--quick`` shrinks the defaults), with this
    window and publisher."""
    q = args.quick
    return Plan(
        subs=args.subs or (300 if q else 1000),
        duration=args.duration or (3 if q else 10),
        rate=args.rate,
        window=window,
        idle_conns=args.idle_conns or (2000 if q else 10000),
        channel_conns=args.channel_conns or (2000 if q else 10000),
        channel_rate=args.channel_rate,
        drain=min(args.drain, 5) if q else args.drain,
        publish=publish,
        extra=list(args.loadgen_arg),
    )


def scenario_args(name: str, plan: Plan, sub_url: str, pub_url: str) -> list[str]:
    common = [
        "-url",
        sub_url,
        "-pub-url",
        pub_url,
        "-publish",
        plan.publish,
        "-drain",
        f"{plan.drain}s",
        *plan.extra,
    ]
    dur = ["-duration", f"{plan.duration}s"]
    if name == "F1":
        return [
            "-mode",
            "fanout",
            "-subs",
            str(plan.subs),
            "-window",
            str(plan.window),
            *dur,
            *common,
        ]
    if name == "F2":
        return ["-mode", "fixed", "-subs", str(plan.subs), "-rate", str(plan.rate), *dur, *common]
    if name == "C1":
        return ["-mode", "idle", "-subs", str(plan.idle_conns), *common]
    if name == "F3":
        return [
            "-mode",
            "channels",
            "-subs",
            str(plan.channel_conns),
            "-rate",
            str(plan.channel_rate),
            *dur,
            *common,
        ]
    raise ValueError(name)


def cpu_list(spec: str) -> str:
    """taskset's "0,2-3" as "0,2,3"."""
    cpus: list[int] = []
    for part in spec.split(","):
        lo, _, hi = part.strip().partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return ",".join(map(str, cpus))


def run_scenario(
    name: str,
    plan: Plan,
    servers: list[Server],
    loadgen_cpu: str,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Start fresh servers, run one scenario, stop them. Never raises."""
    sub_srv, pub_srv = servers[-1], servers[0]
    sub_url = f"ws://{HOST}:{sub_srv.port}/ws"
    pub_url = f"ws://{HOST}:{pub_srv.port}/ws"
    args = scenario_args(name, plan, sub_url, pub_url)
    timeout = timeout or (
        60
        + 3 * plan.duration
        + 2 * plan.drain
        + (plan.idle_conns if name == "C1" else plan.channel_conns if name == "F3" else plan.subs)
        / 200
    )
    out: dict[str, Any] = {"loadgen_args": args}
    try:
        with running(servers):
            pids = [p for s in servers for p in _tree(s.pid)]
            time.sleep(0.5)
            out["server_rss_kb_start"] = sum(rss_kb(p) for p in pids)
            cpu0, t0 = sum(cpu_seconds(p) for p in pids), time.monotonic()
            if name == "C1":
                res = run_idle(loadgen_cpu, args, timeout, pids, settle=1.0, idle_window=2.0)
            else:
                pid_arg = [
                    "-server-pids",
                    ",".join(map(str, pids)),
                    "-server-cpus",
                    cpu_list(sub_srv.cpu),
                ]
                res = run_loadgen(loadgen_cpu, [*args, *pid_arg], timeout)
            cpu1, t1 = sum(cpu_seconds(p) for p in pids), time.monotonic()
            out["server_rss_kb_end"] = sum(rss_kb(p) for p in pids)
            # Over the whole loadgen run (connect, warm-up, load, drain); the
            # loadgen reports server_cpu_pct over the publish window alone.
            out["server_cpu_pct_run"] = 100 * (cpu1 - cpu0) / (t1 - t0)
            out["loadgen"] = res
            if any(not s.alive() for s in servers):
                out["error"] = "server died during the run"
                out["server_log"] = "\n".join(s.log_tail() for s in servers)
            elif res.get("error"):
                out["error"] = res["error"]
    except Exception as e:  # one failed scenario must not lose the others
        out["error"] = f"{type(e).__name__}: {e}"
    return out


def realtime_env(port: int) -> dict[str, str]:
    """The gateway's environment in a benchmark: embedded mode on ``port``, quiet logs."""
    return {
        "SERVER_ADDR": f"{HOST}:{port}",
        "BROADCAST_MQ_TYPE": "memory",
        "PRESENCE_STORE": "memory",
        "LOG_LEVEL": "warning",
        # The benchmarks measure capacity, not the quotas (docs/security.md): 10,000 idle
        # connections and publishers above 100 frames a second are the point here.
        "WS_MAX_CONNECTIONS": "0",
        "WS_MAX_FRAMES_PER_SECOND": "0",
    }


def make_servers(target: str, args: argparse.Namespace, redis_url: str | None) -> list[Server]:
    if target == "baseline" and not args.baseline_cmd:
        return [Server("baseline", BASELINE_COMMAND, {}, free_port(), args.server_cpu)]
    # --baseline-cmd makes the baseline another build of the gateway (main before a change),
    # started exactly as the realtime target is: the ratio is then after/before, same run.
    given = args.baseline_cmd if target == "baseline" else args.realtime_cmd
    cmd = shlex.split(given) if given else REALTIME_COMMAND
    n = 2 if args.two_instances else 1
    servers = []
    for i in range(n):
        port = free_port()
        env = realtime_env(port)
        if redis_url:
            env.update(redis_env(redis_url))
        servers.append(Server(f"{target}-{i}", cmd, env, port, args.server_cpu))
    return servers


def redis_env(url: str) -> dict[str, str]:
    u = urlparse(url)
    env = {
        "BROADCAST_MQ_TYPE": "redis",
        "REDIS_URL": url,
        "REDIS_ADDR": f"{u.hostname or HOST}:{u.port or 6379}",
    }
    if u.password:
        env["REDIS_PASSWORD"] = u.password
    if u.path.strip("/"):
        env["REDIS_DB"] = u.path.strip("/")
    return env


@contextlib.contextmanager
def local_redis(cpu: str) -> Iterator[str]:
    """A throwaway redis-server on a free port, pinned with the servers."""
    exe = shutil.which("redis-server")
    if exe is None:
        sys.exit("bench: --start-redis needs redis-server on PATH")
    port = free_port()
    with tempfile.TemporaryDirectory() as d:
        proc = subprocess.Popen(
            [
                "taskset",
                "-c",
                cpu,
                exe,
                "--port",
                str(port),
                "--bind",
                HOST,
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                d,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            wait_port(port, proc, 10)
            yield f"redis://{HOST}:{port}/0"
        finally:
            proc.terminate()
            proc.wait(10)


# ---------------------------------------------------------------- report

# (scenario, label, how to read it from a scenario result, which way is better)
Metric = tuple[str, str, Callable[[dict[str, Any]], float | None], str]


def _lg(*path: str) -> Callable[[dict[str, Any]], float | None]:
    def get(r: dict[str, Any]) -> float | None:
        v: Any = r.get("loadgen", {})
        for k in path:
            if not isinstance(v, dict):
                return None
            v = v.get(k)
        return float(v) if isinstance(v, int | float) else None

    return get


def _srv(key: str, scale: float = 1.0) -> Callable[[dict[str, Any]], float | None]:
    def get(r: dict[str, Any]) -> float | None:
        v = r.get(key, r.get("loadgen", {}).get(key))
        return float(v) * scale if isinstance(v, int | float) else None

    return get


METRICS: list[Metric] = [
    ("F1", "deliveries/s", _lg("deliveries_per_s"), "higher"),
    ("F1", "latency p50 ms", _lg("latency_ms", "p50"), "lower"),
    ("F1", "latency p99 ms", _lg("latency_ms", "p99"), "lower"),
    ("F1", "latency max ms", _lg("latency_ms", "max"), "lower"),
    ("F1", "lost", _lg("lost"), "lower"),
    ("F1", "server CPU %", _srv("server_cpu_pct"), "-"),
    ("F1", "other load on server core %", _lg("server_core_other_pct"), "-"),
    ("F1", "loadgen CPU %", _lg("loadgen_cpu_pct"), "-"),
    ("F2", "latency p50 ms", _lg("latency_ms", "p50"), "lower"),
    ("F2", "latency p99 ms", _lg("latency_ms", "p99"), "lower"),
    ("F2", "latency max ms", _lg("latency_ms", "max"), "lower"),
    ("F2", "lost", _lg("lost"), "lower"),
    ("F2", "server CPU %", _srv("server_cpu_pct"), "lower"),
    ("F2", "other load on server core %", _lg("server_core_other_pct"), "-"),
    ("C1", "connections", _lg("ready"), "higher"),
    ("C1", "connect s", _lg("connect_s"), "lower"),
    ("C1", "RSS before MiB", _srv("rss_kb_before", 1 / 1024), "lower"),
    ("C1", "RSS after MiB", _srv("rss_kb_after", 1 / 1024), "lower"),
    ("C1", "RSS KiB/conn", _srv("rss_kb_per_conn"), "lower"),
    ("C1", "idle server CPU %", _srv("idle_server_cpu_pct"), "lower"),
    ("F3", "deliveries/s", _lg("deliveries_per_s"), "higher"),
    ("F3", "latency p50 ms", _lg("latency_ms", "p50"), "lower"),
    ("F3", "latency p99 ms", _lg("latency_ms", "p99"), "lower"),
    ("F3", "latency max ms", _lg("latency_ms", "max"), "lower"),
    ("F3", "lost", _lg("lost"), "lower"),
    ("F3", "server CPU %", _srv("server_cpu_pct"), "lower"),
    ("F3", "other load on server core %", _lg("server_core_other_pct"), "-"),
]


def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    if v == 0 or abs(v) >= 100:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def summarize(targets: dict[str, dict[str, Any]], scenarios: Sequence[str]) -> list[dict[str, Any]]:
    rows = []
    for sc, label, get, better in METRICS:
        if sc not in scenarios:
            continue
        row: dict[str, Any] = {"scenario": sc, "metric": label, "better": better}
        for t in TARGETS:
            runs = targets.get(t, {}).get("scenarios", {}).get(sc, {}).get("runs", [])
            values = [v for r in runs if not r.get("error") and (v := get(r)) is not None]
            row[t] = statistics.median(values) if values else None
            row[f"{t}_runs"] = values
        b, r = row.get("baseline"), row.get("realtime")
        row["ratio"] = r / b if b and r is not None else None
        rows.append(row)
    return rows


def print_table(rows: list[dict[str, Any]], targets: dict[str, dict[str, Any]]) -> None:
    head = ["scenario", "metric", "baseline", "realtime", "realtime/baseline", "better"]
    body = [
        [
            r["scenario"],
            r["metric"],
            _fmt(r["baseline"]),
            _fmt(r["realtime"]),
            "-" if r["ratio"] is None else f"{r['ratio']:.2f}x",
            r["better"],
        ]
        for r in rows
    ]
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head))]
    line = "  ".join("-" * w for w in widths)
    print(line)
    print("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)))
    print(line)
    last = None
    for cells in body:
        if last is not None and cells[0] != last:
            print()
        last = cells[0]
        pairs = enumerate(zip(cells, widths, strict=True))
        print("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in pairs))
    print(line)
    for t, tres in targets.items():
        for sc, entry in tres.get("scenarios", {}).items():
            for i, res in enumerate(entry["runs"]):
                if res.get("error"):
                    print(f"{t} {sc} run {i + 1}: ERROR {res['error']}")
                if res.get("loadgen", {}).get("drain_end") == "timeout":
                    print(
                        f"{t} {sc} run {i + 1}: the drain ran out while deliveries were still "
                        "arriving: 'lost' counts those still in flight"
                    )
                other = res.get("loadgen", {}).get("server_core_other_pct") or 0
                if other > 10:
                    print(
                        f"{t} {sc} run {i + 1}: other processes took {other:.0f} % of the "
                        "server's core: noisy, rerun before trusting it"
                    )
                lg_cpu = res.get("loadgen", {}).get("loadgen_cpu_pct") or 0
                if lg_cpu > 80:
                    print(
                        f"{t} {sc} run {i + 1}: loadgen at {lg_cpu:.0f} % of its core: "
                        "it may be the bottleneck"
                    )
        if tres.get("error"):
            print(f"{t}: ERROR {tres['error']}")


# ---------------------------------------------------------------- main


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--target",
        action="append",
        choices=TARGETS,
        help="server to measure; repeat for several (default: both)",
    )
    p.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help="comma-separated subset of F1,F2,C1,F3 (default: all)",
    )
    p.add_argument(
        "--quick", action="store_true", help="small sizes: a smoke run of about a minute"
    )
    p.add_argument("--subs", type=int, help="F1/F2 subscribers (default 1000)")
    p.add_argument("--duration", type=float, help="F1/F2/F3 publish seconds (default 10)")
    p.add_argument("--rate", type=float, default=20, help="F2 broadcasts/s (default 20)")
    p.add_argument(
        "--window",
        type=int,
        default=10,
        help="F1: broadcasts in flight before the publisher waits; 0 leaves only "
        "TCP backpressure (default 10)",
    )
    p.add_argument("--idle-conns", type=int, help="C1 connections (default 10000)")
    p.add_argument("--channel-conns", type=int, help="F3 connections (default 10000)")
    p.add_argument(
        "--channel-rate",
        type=float,
        default=4,
        help="F3 broadcasts/s, half of them shared (default 4)",
    )
    p.add_argument(
        "--drain", type=float, default=10, help="longest drain wait, seconds (default 10)"
    )
    p.add_argument(
        "--publish",
        choices=("ws", "http"),
        default="ws",
        help="publish over the WebSocket or POST /api/event (default ws)",
    )
    default_cmd = shlex.join(REALTIME_COMMAND)
    p.add_argument("--realtime-cmd", help=f"command for the gateway (default: {default_cmd})")
    p.add_argument(
        "--baseline-cmd",
        help="run another gateway build as the baseline, started like the gateway (for example "
        "'env PYTHONPATH=../before python -m realtime' for a checkout of main before a change)",
    )
    p.add_argument("--redis-url", help="run the gateway with BROADCAST_MQ_TYPE=redis on this Redis")
    p.add_argument(
        "--start-redis",
        action="store_true",
        help="start a throwaway redis-server and use it as --redis-url",
    )
    p.add_argument(
        "--two-instances",
        action="store_true",
        help="realtime: two gateways on one Redis; publish into one, subscribe on the other",
    )
    p.add_argument("--server-cpu", default="0", help="taskset CPU list for servers (default 0)")
    p.add_argument(
        "--loadgen-cpu", default="1", help="taskset CPU list for the loadgen (default 1)"
    )
    p.add_argument(
        "--repeat", type=int, default=1, help="runs of each scenario; the table shows medians"
    )
    p.add_argument("--no-build", action="store_true", help="use the existing loadgen binary")
    p.add_argument("--out", type=Path, help="result file (default bench/results/<timestamp>.json)")
    p.add_argument(
        "--peers",
        help="also run Centrifugo and/or the Go seed ('centrifugo,seed') on the rows of issue "
        "#14's table, same run, and print realtime/best peer (bench/peers.py)",
    )
    p.add_argument(
        "--cases",
        help="--peers: comma-separated rows of the table to run (keys in bench/peers.py CASES)",
    )
    p.add_argument(
        "--seed-source",
        type=Path,
        help="--peers seed: the seed's source tree or git directory (default: clone it)",
    )
    p.add_argument(
        "--loadgen-arg",
        action="append",
        default=[],
        help="extra flag passed to every loadgen run (repeatable)",
    )
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.peers:
        from bench import peers  # the peers' runner builds on this module

        return peers.main(args)
    targets = args.target or list(TARGETS)
    scenarios = [s.strip().upper() for s in args.scenarios.split(",") if s.strip()]
    if bad := [s for s in scenarios if s not in SCENARIOS]:
        sys.exit(f"bench: unknown scenario(s) {bad}; choose from {', '.join(SCENARIOS)}")
    if args.two_instances and not (args.redis_url or args.start_redis):
        sys.exit("bench: --two-instances needs --redis-url or --start-redis")
    plan = plan_from(args, args.window, args.publish)
    if not args.no_build:
        build_loadgen()

    started = dt.datetime.now(dt.UTC)
    report: dict[str, Any] = {
        "schema": 1,
        "started": started.isoformat(timespec="seconds"),
        "git": {
            "commit": _git("rev-parse", "HEAD"),
            "branch": _git("rev-parse", "--abbrev-ref", "HEAD"),
            "dirty": bool(_git("status", "--porcelain")),
        },
        "machine": {
            "cpus": os.cpu_count(),
            "kernel": platform.release(),
            "python": platform.python_version(),
        },
        "settings": {
            **vars(plan),
            "scenarios": scenarios,
            "targets": targets,
            "server_cpu": args.server_cpu,
            "loadgen_cpu": args.loadgen_cpu,
            "redis": bool(args.redis_url or args.start_redis),
            "two_instances": args.two_instances,
            "repeat": args.repeat,
        },
        "targets": {},
    }
    with contextlib.ExitStack() as stack:
        redis_url = args.redis_url
        if args.start_redis:
            redis_url = stack.enter_context(local_redis(args.server_cpu))
        servers = {
            t: make_servers(t, args, redis_url if t == "realtime" else None) for t in targets
        }
        for t, srv in servers.items():
            report["targets"][t] = {
                "command": srv[0].cmd,
                "env": [s.env for s in srv],
                "instances": len(srv),
                "scenarios": {},
            }
        # Targets take turns within each scenario and repeat, so a burst of
        # outside load on this shared machine hits both alike.
        for sc in scenarios:
            for rep in range(args.repeat):
                for t, srv in servers.items():
                    tres = report["targets"][t]
                    if tres.get("error"):
                        continue
                    print(
                        f"[{t}] {sc} run {rep + 1}/{args.repeat} ...", file=sys.stderr, flush=True
                    )
                    t0 = time.monotonic()
                    res = run_scenario(sc, plan, srv, args.loadgen_cpu)
                    res["wall_s"] = round(time.monotonic() - t0, 1)
                    tres["scenarios"].setdefault(sc, {"runs": []})["runs"].append(res)
                    err = res.get("error", "")
                    if err:
                        print(f"[{t}] {sc} failed: {err}", file=sys.stderr)
                    # A server that cannot start will not start for the next scenario either.
                    if "did not listen" in err or "before listening" in err:
                        tres["error"] = err

    report["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    report["summary"] = summarize(report["targets"], scenarios)
    out = args.out or RESULTS / f"{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report["summary"], report["targets"])
    print(f"results: {out}")
    results = [
        r for t in report["targets"].values() for e in t["scenarios"].values() for r in e["runs"]
    ]
    failed = any(r.get("error") for r in results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
