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
import queue
import resource
import shlex
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from bench import run as bench
from realtime.testing.waiting import wait_until

# Descriptors a process needs beyond one per connection: the interpreter, Redis clients, the
# listener, epoll.
FD_HEADROOM = 256
SOURCE_NET = "127.0.0."  # source addresses 127.0.0.2 and up
CGROUP_NAME = f"realtime-bench-loadgen-{os.getpid()}"


def port_range() -> int:
    try:
        lo, hi = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
        return hi - lo + 1
    except (OSError, ValueError):
        return 28232


def source_ips(conns: int, minimum: int = 1) -> list[str]:
    """Enough loopback source addresses for conns connections to one destination, with a
    tenth of each address's ports left for whatever else runs (TIME_WAIT of a previous run)."""
    per_ip = int(port_range() * 0.9)
    n = max(minimum, math.ceil(conns / per_ip))
    if n > 250:
        sys.exit(f"bench.scale: {conns} connections need {n} source addresses; at most 250")
    return [f"{SOURCE_NET}{2 + i}" for i in range(n)]


def raise_nofile(want: int) -> int:
    """Raise this process's open-files limit (and so every server's and loadgen's: they inherit
    it) towards want, and return the limit in force. Raising the hard limit needs
    CAP_SYS_RESOURCE; without it the soft limit goes up to the hard one, and the caller splits
    the connections over more processes."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= want:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(want, hard)))
        return want
    except (ValueError, OSError) as e:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        print(
            f"bench.scale: open files limited to {hard} per process ({e} raising it to {want}): "
            "connections are spread over several processes",
            file=sys.stderr,
        )
        return hard


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
    per_proc = args.fd_limit - FD_HEADROOM
    n_lg = args.loadgens or max(1, math.ceil(args.conns / per_proc))
    shares = [args.conns // n_lg + (1 if i < args.conns % n_lg else 0) for i in range(n_lg)]
    if max(shares) > per_proc:
        sys.exit(
            f"bench.scale: {max(shares)} connections per load generator, its open-files limit "
            f"allows {per_proc}: give --loadgens {math.ceil(args.conns / per_proc)} or more"
        )
    # Source addresses: each loadgen dials from its own, or several when its share needs more
    # ports than one address has.
    ips = source_ips(args.conns, minimum=n_lg)
    per_lg = [ips[i::n_lg] for i in range(n_lg)]
    cpu_srv, cpu_lg = ("0", "1") if args.workers == 1 else ("0,1", "0,1")
    runs = []
    for rep in range(args.repeat):
        print(
            f"[c100k] {args.conns} connections, {args.workers} worker(s), {n_lg} loadgen(s), "
            f"run {rep + 1}/{args.repeat} ...",
            file=sys.stderr,
        )
        lg_args = [
            [
                "-mode",
                "idle",
                "-subs",
                str(share),
                "-source-ips",
                ",".join(addrs),
                "-connect-concurrency",
                str(args.connect_concurrency),
                "-warmup",
                "120s",
                "-hold",
                "600s",
            ]
            for share, addrs in zip(shares, per_lg, strict=True)
        ]
        with contextlib.ExitStack() as stack:
            redis_url = None
            cmd = args.realtime_cmd
            if args.workers > 1:
                # Workers share the port; the warm-up broadcast must reach every worker.
                redis_url = stack.enter_context(bench.local_redis(cpu_srv))
                cmd = cmd or f"{shlex.quote(sys.executable)} -P -m realtime serve --workers "
                cmd += "" if args.realtime_cmd else str(args.workers)
            servers = bench.make_servers("realtime", server_args(cmd, cpu_srv), redis_url)
            url = f"ws://{bench.HOST}:{servers[0].port}/ws"
            for a in lg_args:
                a[:0] = ["-url", url, "-pub-url", url]
            res = hold_idle(servers, lg_args, cpu_lg, args.workers, timeout=120 + args.conns / 100)
        runs.append(res)
    rows = [
        ("connections held", [r.get("ready") for r in runs]),
        ("failed to connect", [r.get("connect_failed") for r in runs]),
        ("connect s", [r.get("connect_s") for r in runs]),
        ("connect rate /s", [r.get("connect_rate") for r in runs]),
        ("RSS before MiB", [_kib(r.get("rss_kb_before"), 1024) for r in runs]),
        ("RSS after MiB", [_kib(r.get("rss_kb_after"), 1024) for r in runs]),
        ("RSS KiB/conn", [r.get("rss_kb_per_conn") for r in runs]),
        ("kernel TCP KiB/conn (both ends)", [r.get("kernel_tcp_kb_per_conn") for r in runs]),
        ("idle server CPU %", [r.get("idle_server_cpu_pct") for r in runs]),
    ]
    return {"source_ips": per_lg, "runs": runs, "table": table(rows)}


def settle_rss(pid: int, workers: int, timeout: float = 60) -> None:
    """Wait for every worker to exist and for the tree's RSS to stop growing (imports done),
    so that 'before' is not taken while workers are still starting."""

    def steady() -> bool:
        if len(bench._tree(pid)) < workers + (1 if workers > 1 else 0):
            return False
        a = bench.rss_kb(pid)
        time.sleep(1.0)
        return abs(bench.rss_kb(pid) - a) < 0.01 * a

    wait_until(steady, timeout, interval=0.2, message="server RSS steady")


def hold_idle(
    servers: list[bench.Server], lg_args: list[list[str]], cpu: str, workers: int, timeout: float
) -> dict[str, Any]:
    """Start servers, connect every loadgen's idle subscribers at once, read RSS, fds and
    CPU while they are held, then let them go. Never raises."""
    out: dict[str, Any] = {"loadgen_args": lg_args}
    procs: list[subprocess.Popen[str]] = []
    try:
        with bench.running(servers):
            root = servers[0].pid
            settle_rss(root, workers)
            pids = bench._tree(root)
            out["rss_kb_before"] = sum(bench.rss_kb(p) for p in pids)
            lines: queue.Queue[tuple[int, str | None]] = queue.Queue()
            with SockStat() as ss:
                for i, a in enumerate(lg_args):
                    cmd = [*bench.LOADGEN_WRAP, "taskset", "-c", cpu, str(bench.LOADGEN), *a]
                    cmd += ["-timeout", f"{timeout:.0f}s"]
                    p = subprocess.Popen(
                        cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
                    )
                    procs.append(p)
                    threading.Thread(target=_pump, args=(i, p, lines), daemon=True).start()
                ready: set[int] = set()
                done: set[int] = set()
                last = [""] * len(procs)
                deadline = time.monotonic() + timeout
                while len(ready | done) < len(procs) and time.monotonic() < deadline:
                    with contextlib.suppress(queue.Empty):
                        i, line = lines.get(timeout=1)
                        if line is None:
                            done.add(i)
                            continue
                        last[i] = line
                        with contextlib.suppress(ValueError):
                            if json.loads(line).get("ready"):
                                ready.add(i)
                if len(ready) == len(procs):
                    time.sleep(2.0)  # the last subscribes and warm-ups settle
                    pids = bench._tree(root)
                    out["rss_kb_after"] = sum(bench.rss_kb(p) for p in pids)
                    out["fds_per_process"] = {str(p): _fds(p) for p in pids}
                    cpu0, t0 = sum(bench.cpu_seconds(p) for p in pids), time.monotonic()
                    time.sleep(5.0)
                    cpu1, t1 = sum(bench.cpu_seconds(p) for p in pids), time.monotonic()
                    out["idle_server_cpu_pct"] = 100 * (cpu1 - cpu0) / (t1 - t0)
                else:
                    out["error"] = f"{len(ready)} of {len(procs)} loadgens became ready"
                for p in procs:
                    assert p.stdin is not None
                    with contextlib.suppress(OSError):
                        p.stdin.close()
                for p in procs:
                    p.wait(timeout=120)
                while len(done) < len(procs):
                    i, line = lines.get(timeout=10)
                    if line is None:
                        done.add(i)
                    else:
                        last[i] = line
            results = []
            for text in last:
                try:
                    results.append(json.loads(text))
                except ValueError:
                    results.append({"error": f"loadgen printed no JSON: {text[-300:]!r}"})
            out["loadgens"] = results
            out["sockstat_before"], out["sockstat_peak"] = ss.before, ss.peak
            if not all(s.alive() for s in servers):
                out["error"] = "server died during the run"
                out["server_log"] = "\n".join(s.log_tail() for s in servers)
    except Exception as e:  # one failed run must not lose the others
        out["error"] = f"{type(e).__name__}: {e}"
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
            if p.stdout is not None:
                p.stdout.close()
    lgs = out.get("loadgens", [])
    for key in ("connected", "connect_failed", "ready", "disconnects", "error_frames"):
        out[key] = sum(r.get(key) or 0 for r in lgs)
    if errors := [r["error"] for r in lgs if r.get("error")]:
        out.setdefault("error", "; ".join(errors))
    # The loadgens connect side by side: the connect phase lasts as long as the slowest one.
    out["connect_s"] = max((r.get("connect_s") or 0 for r in lgs), default=0)
    if out["connected"] and out["connect_s"]:
        out["connect_rate"] = out["connected"] / out["connect_s"]
    if out["connected"] and "rss_kb_after" in out:
        out["rss_kb_per_conn"] = (out["rss_kb_after"] - out["rss_kb_before"]) / out["connected"]
        kernel = (out["sockstat_peak"]["mem_pages"] - out["sockstat_before"]["mem_pages"]) * (
            os.sysconf("SC_PAGE_SIZE")
        )
        out["kernel_tcp_kb_per_conn"] = kernel / 1024 / out["connected"]
    return out


def _pump(i: int, p: subprocess.Popen[str], lines: queue.Queue[tuple[int, str | None]]) -> None:
    assert p.stdout is not None
    for line in p.stdout:
        lines.put((i, line))
    lines.put((i, None))


def _fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


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
        # The run's bound: connecting goes at a few hundred a second on a busy machine.
        runs.append(bench.run_scenario("F3", p, servers, "1", timeout=180 + args.conns / 50))

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
                    servers = bench.make_servers("realtime", server_args(cmd, "0,1"), redis_url)
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
        "--connect-concurrency",
        type=int,
        default=64,
        help="c100k: dials in flight per loadgen (default 64)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="c100k: realtime serve --workers N on Redis, for more connections than one "
        "process may open (default 1: one process, memory broker)",
    )
    p.add_argument(
        "--loadgens",
        type=int,
        help="c100k: loadgen processes, each with its own source addresses (default: as many "
        "as the open-files limit needs)",
    )
    p.add_argument("--scenarios", default="F1,F2", help="workers: F1, F2 or both (default F1,F2)")
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


def _stop(signum: int, frame: object) -> None:
    # SIGTERM unwinds like ^C (which a background job does not get: it ignores SIGINT), so
    # every finally block stops its servers and loadgens.
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _stop)
    # workers holds about a thousand connections: the limit in force is plenty.
    conns = args.conns if args.what != "workers" else 0
    args.fd_limit = nofile = raise_nofile(conns + FD_HEADROOM)
    per_proc = nofile - FD_HEADROOM
    if args.what == "f3" and args.conns > per_proc:
        sys.exit(
            f"bench.scale: f3 runs one loadgen and one gateway process, and each may open "
            f"{nofile} files here: --conns {per_proc} at most"
        )
    if args.what == "c100k" and args.conns > args.workers * per_proc:
        sys.exit(
            f"bench.scale: each gateway process may open {nofile} files here: "
            f"--workers {math.ceil(args.conns / per_proc)} or more for --conns {args.conns}"
        )
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
