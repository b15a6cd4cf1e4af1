"""Scale benchmarks (issue #14, item 4): many connections, many channels, several workers.

    python -m bench.scale c100k             # 100,000 idle subscribed connections, one instance
    python -m bench.scale f3                # 100,000 connections on 10,000 channels of 10
    python -m bench.scale workers           # F1 and F2 on Redis, --workers 1 against 2
    python -m bench.scale c100k --conns 20000 --repeat 3

Each run is bounded: the load generator has a hard -timeout, and every server is stopped at the
end of its scenario. It is never part of the test suite (tests/bench runs it at a tiny size).

How the machine is stretched to 100,000 connections, and why:

- Open files: the gateway and the load generator each hold one descriptor per connection,
  beyond the usual 20,000 or 65,536. This process raises RLIMIT_NOFILE (soft and hard; root,
  or a hard limit already that high) before it starts anything, and its children inherit it.
  By hand: `prlimit --nofile=120000:120000 -p PID` or `ulimit -Hn 120000; ulimit -n 120000`.
- Ephemeral ports: one source address has net.ipv4.ip_local_port_range's ports (28,232 by
  default) towards one destination. The load generator dials from several loopback source
  addresses in turn (-source-ips 127.0.0.2,127.0.0.3,...; all of 127.0.0.0/8 is on lo, nothing
  to configure), enough of them for the count, while the gateway listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import math
import os
import platform
import resource
import shlex
import statistics
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from bench import run as bench

# Headroom beyond one descriptor per connection: the interpreter, Redis clients, the listener.
FD_HEADROOM = 4096
SOURCE_NET = "127.0.0."  # source addresses 127.0.0.2 and up
CGROUP_NAME = f"realtime-bench-loadgen-{os.getpid()}"


def port_range() -> int:
    try:
        lo, hi = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
        return hi - lo + 1
    except (OSError, ValueError):
        return 28232


def source_ips(conns: int) -> list[str]:
    """Enough loopback source addresses for conns connections to one destination, with a
    tenth of each address's ports left for whatever else runs (TIME_WAIT of a previous run)."""
    per_ip = int(port_range() * 0.9)
    n = max(1, math.ceil(conns / per_ip))
    if n > 250:
        sys.exit(f"bench.scale: {conns} connections need {n} source addresses; at most 250")
    return [f"{SOURCE_NET}{2 + i}" for i in range(n)]


def raise_nofile(conns: int) -> int:
    """Give this process (and so every server and loadgen it starts) room for conns sockets."""
    want = conns + FD_HEADROOM
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= want:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(want, hard)))
    except (ValueError, OSError) as e:
        sys.exit(
            f"bench.scale: RLIMIT_NOFILE is {soft}/{hard}, {want} are needed and raising it "
            f"failed ({e}): run as root or raise the hard limit first (ulimit -Hn {want})"
        )
    return want


class SockStat:
    """Samples /proc/net/sockstat while a scenario runs: the kernel's TCP sockets and the
    pages their buffers hold (not in any process's RSS; both ends of loopback count)."""

    def __init__(self) -> None:
        self.before = self.read()
        self.peak = dict(self.before)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def read() -> dict[str, int]:
        with contextlib.suppress(OSError):
            for line in Path("/proc/net/sockstat").read_text().splitlines():
                if line.startswith("TCP:"):
                    f = line.split()[1:]
                    vals = dict(zip(f[::2], map(int, f[1::2]), strict=False))
                    return {"inuse": vals.get("inuse", 0), "mem_pages": vals.get("mem", 0)}
        return {"inuse": 0, "mem_pages": 0}

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            now = self.read()
            for k, v in now.items():
                self.peak[k] = max(self.peak[k], v)

    def __enter__(self) -> SockStat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@contextlib.contextmanager
def cpu_capped_loadgen(cores: float) -> Iterator[str]:
    """Run every loadgen of this process in a cgroup capped at `cores` CPUs' worth of time
    (CFS quota), wherever the scheduler puts it: the load generator's share of the machine
    is then fixed, and the gateway has the rest whatever the number of workers."""
    period = 100_000
    quota = int(cores * period)
    v1 = Path("/sys/fs/cgroup/cpu")
    v2 = Path("/sys/fs/cgroup")
    if (v1 / "cpu.cfs_quota_us").exists():
        d = v1 / CGROUP_NAME
        d.mkdir()
        (d / "cpu.cfs_period_us").write_text(str(period))
        (d / "cpu.cfs_quota_us").write_text(str(quota))
    elif (v2 / "cgroup.controllers").exists():
        d = v2 / CGROUP_NAME
        d.mkdir()
        (d / "cpu.max").write_text(f"{quota} {period}")
    else:
        sys.exit("bench.scale: --loadgen-cores needs the cgroup cpu controller (v1 or v2)")
    bench.LOADGEN_WRAP[:] = ["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', str(d)]
    try:
        yield str(d)
    finally:
        bench.LOADGEN_WRAP[:] = []
        # The loadgen has exited by now (run_scenario waits for it); an empty cgroup goes.
        for _ in range(50):
            try:
                d.rmdir()
                break
            except OSError:
                time.sleep(0.1)


def server_args(cmd: str | None, cpu: str) -> argparse.Namespace:
    return argparse.Namespace(
        baseline_cmd=None, realtime_cmd=cmd, two_instances=False, server_cpu=cpu
    )


def plan(args: argparse.Namespace, extra: list[str], **kw: Any) -> bench.Plan:
    base: dict[str, Any] = {
        "subs": 1000,
        "duration": args.duration,
        "rate": 20,
        "window": 10,
        "idle_conns": 10000,
        "channel_conns": 10000,
        "channel_rate": 4,
        "drain": 10,
        "publish": "ws",
        "extra": extra,
    }
    base.update(kw)
    return bench.Plan(**base)


def lg(run: dict[str, Any], key: str) -> Any:
    return run.get("loadgen", {}).get(key)


# ---------------------------------------------------------------- scenarios


def c100k(args: argparse.Namespace) -> dict[str, Any]:
    ips = source_ips(args.conns)
    extra = [
        "-source-ips",
        ",".join(ips),
        "-connect-concurrency",
        str(args.connect_concurrency),
        "-warmup",
        "120s",
    ]
    p = plan(args, extra, idle_conns=args.conns)
    runs = []
    for rep in range(args.repeat):
        print(f"[c100k] {args.conns} connections, run {rep + 1}/{args.repeat} ...", file=sys.stderr)
        servers = bench.make_servers("realtime", server_args(args.realtime_cmd, "0"), None)
        with SockStat() as ss:
            res = bench.run_scenario("C1", p, servers, "1")
        res["sockstat_before"], res["sockstat_peak"] = ss.before, ss.peak
        connected = lg(res, "connected") or 0
        if connected and lg(res, "connect_s"):
            res["connect_rate"] = connected / lg(res, "connect_s")
        if connected:
            kernel = (ss.peak["mem_pages"] - ss.before["mem_pages"]) * os.sysconf("SC_PAGE_SIZE")
            res["kernel_tcp_kb_per_conn"] = kernel / 1024 / connected
        runs.append(res)
    rows = [
        ("connections held", [lg(r, "ready") for r in runs]),
        ("failed to connect", [lg(r, "connect_failed") for r in runs]),
        ("connect s", [lg(r, "connect_s") for r in runs]),
        ("connect rate /s", [r.get("connect_rate") for r in runs]),
        ("RSS before MiB", [_kib(lg(r, "rss_kb_before"), 1024) for r in runs]),
        ("RSS after MiB", [_kib(lg(r, "rss_kb_after"), 1024) for r in runs]),
        ("RSS KiB/conn", [lg(r, "rss_kb_per_conn") for r in runs]),
        ("kernel TCP KiB/conn (both ends)", [r.get("kernel_tcp_kb_per_conn") for r in runs]),
        ("idle server CPU %", [lg(r, "idle_server_cpu_pct") for r in runs]),
    ]
    return {"source_ips": ips, "runs": runs, "table": table(rows)}


def f3(args: argparse.Namespace) -> dict[str, Any]:
    ips = source_ips(args.conns)
    extra = ["-source-ips", ",".join(ips), "-group-size", str(args.group_size), "-warmup", "120s"]
    p = plan(args, extra, channel_conns=args.conns, channel_rate=args.rate)
    runs = []
    for rep in range(args.repeat):
        print(
            f"[f3] {args.conns} connections in channels of {args.group_size}, {args.rate:g}/s, "
            f"run {rep + 1}/{args.repeat} ...",
            file=sys.stderr,
        )
        servers = bench.make_servers("realtime", server_args(args.realtime_cmd, "0"), None)
        runs.append(bench.run_scenario("F3", p, servers, "1"))

    def lat(k: str) -> list[Any]:
        return [(lg(r, "latency_ms") or {}).get(k) for r in runs]

    rows = [
        ("connections ready", [lg(r, "ready") for r in runs]),
        ("connect s", [lg(r, "connect_s") for r in runs]),
        ("broadcasts sent", [lg(r, "sent") for r in runs]),
        ("deliveries/s", [lg(r, "deliveries_per_s") for r in runs]),
        ("latency p50 ms", lat("p50")),
        ("latency p99 ms", lat("p99")),
        ("latency max ms", lat("max")),
        ("lost", [lg(r, "lost") for r in runs]),
        ("server CPU %", [lg(r, "server_cpu_pct") for r in runs]),
        ("RSS end MiB", [_kib(r.get("server_rss_kb_end"), 1024) for r in runs]),
        ("other load on server core %", [lg(r, "server_core_other_pct") for r in runs]),
    ]
    return {"source_ips": ips, "runs": runs, "table": table(rows)}


def workers(args: argparse.Namespace) -> dict[str, Any]:
    py = shlex.quote(sys.executable)
    cmds = {n: f"{py} -P -m realtime serve --workers {n}" for n in (1, 2)}
    scenarios = [s.strip().upper() for s in args.scenarios.split(",") if s.strip()]
    p = plan(args, [])
    out: dict[str, Any] = {"loadgen_cores": args.loadgen_cores, "commands": cmds, "runs": {}}
    with contextlib.ExitStack() as stack:
        redis_url = stack.enter_context(bench.local_redis("0,1"))
        stack.enter_context(cpu_capped_loadgen(args.loadgen_cores))
        for sc in scenarios:
            for rep in range(args.repeat):
                # Turns alternate, so a burst of outside load hits both alike.
                for n, cmd in cmds.items():
                    print(f"[workers {n}] {sc} run {rep + 1}/{args.repeat} ...", file=sys.stderr)
                    servers = bench.make_servers(
                        "realtime", server_args(cmd, "0,1"), redis_url
                    )
                    res = bench.run_scenario(sc, p, servers, "0,1")
                    out["runs"].setdefault(f"{sc} workers={n}", []).append(res)

    def col(sc: str, n: int, get: Any) -> list[Any]:
        return [get(r) for r in out["runs"].get(f"{sc} workers={n}", [])]

    rows = []
    for sc in scenarios:
        metrics: list[tuple[str, Any]] = [
            ("latency p50 ms", lambda r: (lg(r, "latency_ms") or {}).get("p50")),
            ("latency p99 ms", lambda r: (lg(r, "latency_ms") or {}).get("p99")),
            ("lost", lambda r: lg(r, "lost")),
            ("server CPU % (all workers)", lambda r: lg(r, "server_cpu_pct")),
            ("loadgen CPU % of one core", lambda r: lg(r, "loadgen_cpu_pct")),
        ]
        if sc == "F1":
            metrics.insert(0, ("deliveries/s", lambda r: lg(r, "deliveries_per_s")))
        for label, get in metrics:
            for n in (1, 2):
                rows.append((f"{sc} {label}, workers {n}", col(sc, n, get)))
    out["table"] = table(rows)
    return out


def _kib(v: Any, div: float) -> float | None:
    return v / div if isinstance(v, int | float) else None


def table(rows: Sequence[tuple[str, list[Any]]]) -> list[dict[str, Any]]:
    out = []
    for label, vals in rows:
        nums = [float(v) for v in vals if isinstance(v, int | float)]
        out.append(
            {"metric": label, "median": statistics.median(nums) if nums else None, "runs": nums}
        )
    return out


def print_table(rows: list[dict[str, Any]]) -> None:
    w = max(len(r["metric"]) for r in rows)
    for r in rows:
        runs = " ".join(bench._fmt(v) for v in r["runs"])
        print(f"{r['metric'].ljust(w)}  {bench._fmt(r['median']).rjust(10)}   runs: {runs}")


# ---------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.scale",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("what", choices=("c100k", "f3", "workers"))
    p.add_argument(
        "--conns", type=int, default=100_000, help="c100k, f3: connections (default 100000)"
    )
    p.add_argument(
        "--group-size", type=int, default=10, help="f3: subscribers per channel (default 10)"
    )
    p.add_argument(
        "--rate",
        type=float,
        default=2000,
        help="f3: broadcasts/s, each to one random channel (default 2000: 20,000 deliveries/s, "
        "the rate of bench's own F3)",
    )
    p.add_argument("--duration", type=float, default=10, help="f3, workers: publish seconds")
    p.add_argument(
        "--connect-concurrency", type=int, default=64, help="c100k: dials in flight (default 64)"
    )
    p.add_argument(
        "--scenarios", default="F1,F2", help="workers: F1, F2 or both (default F1,F2)"
    )
    p.add_argument(
        "--loadgen-cores",
        type=float,
        default=0.5,
        help="workers: the load generator's CPU cap in cores, a cgroup CFS quota (default 0.5)",
    )
    p.add_argument("--realtime-cmd", help="c100k, f3: the gateway's command")
    p.add_argument("--repeat", type=int, default=1, help="runs; the table shows medians")
    p.add_argument("--no-build", action="store_true", help="use the existing loadgen binary")
    p.add_argument("--out", type=Path, help="result file (default bench/results/scale-...json)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    nofile = raise_nofile(args.conns if args.what != "workers" else 0)
    if not args.no_build:
        bench.build_loadgen()
    started = dt.datetime.now(dt.UTC)
    run = {"c100k": c100k, "f3": f3, "workers": workers}[args.what]
    result = run(args)
    report = {
        "schema": 1,
        "what": args.what,
        "started": started.isoformat(timespec="seconds"),
        "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "git": {
            "commit": bench._git("rev-parse", "HEAD"),
            "dirty": bool(bench._git("status", "--porcelain")),
        },
        "machine": {
            "cpus": os.cpu_count(),
            "kernel": platform.release(),
            "python": platform.python_version(),
            "nofile": nofile,
            "ip_local_ports": port_range(),
        },
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        **result,
    }
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    out = args.out or bench.RESULTS / f"scale-{args.what}-{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print_table(result["table"])
    failed = False
    for key, runs in _all_runs(result):
        for i, r in enumerate(runs):
            if r.get("error"):
                failed = True
                print(f"{key} run {i + 1}: ERROR {r['error']}")
            other = lg(r, "server_core_other_pct") or 0
            if other > 10:
                print(f"{key} run {i + 1}: other processes took {other:.0f} % of the server core")
    print(f"results: {out}")
    return 1 if failed else 0


def _all_runs(result: dict[str, Any]) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    runs = result["runs"]
    if isinstance(runs, dict):
        yield from runs.items()
    else:
        yield "run", runs


if __name__ == "__main__":
    sys.exit(main())
