"""The floor for fan-out latency on this machine: one loopback ``send()`` per subscriber.

Issue #14 asks for F2's p99 to be at most 1.2x "the cost of one loopback send() per
subscriber measured on the same machine (the floor for one core)". This measures that floor:
``--subs`` TCP connections on 127.0.0.1, read by another process on the load generator's core,
and one frame (``--size`` bytes, F2's WebSocket frame) written to each of them with one plain
``socket.send()`` from this process on the server's core, ``--rate`` times a second, as F2
publishes. A pass's duration is the time the last subscriber's frame waited: a server that did
nothing but write could not deliver F2's last frame sooner. Its median over ``--passes`` passes
is the floor.

With ``--f2`` it then runs F2 (``python -m bench --scenarios F2``, through a throwaway Redis,
HTTP publish, as in the peers table) and prints its p99 against the floor, so both come from one
run; ``--repeat`` alternates the two.

    python -m bench.floor
    python -m bench.floor --f2 --repeat 2
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"

READER = """
import selectors, socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
sel = selectors.DefaultSelector()
socks = []
for _ in range(n):
    s = socket.create_connection((sys.argv[3], port))
    s.setblocking(False)
    sel.register(s, selectors.EVENT_READ)
    socks.append(s)
print("ready", flush=True)
while True:
    for key, _ in sel.select():
        if not key.fileobj.recv(65536):
            raise SystemExit
"""


def measure_floor(
    subs: int, size: int, rate: float, passes: int, cpus: tuple[str, str]
) -> dict[str, Any]:
    server_cpu, reader_cpu = cpus
    listener = socket.socket()
    listener.bind((HOST, 0))
    listener.listen(4096)
    port = listener.getsockname()[1]
    reader = subprocess.Popen(
        ["taskset", "-c", reader_cpu, sys.executable, "-c", READER, str(port), str(subs), HOST],
        stdout=subprocess.PIPE,
        text=True,
    )
    conns: list[socket.socket] = []
    affinity = os.sched_getaffinity(0)
    try:
        for _ in range(subs):
            conn, _ = listener.accept()
            # As a gateway's: no Nagle delay on small frames.
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conns.append(conn)
        assert reader.stdout is not None
        if reader.stdout.readline().strip() != "ready":
            raise RuntimeError("the reader did not connect")
        os.sched_setaffinity(0, {int(server_cpu)})
        frame = b"\x81\x7e" + (size - 4).to_bytes(2, "big") + b"x" * (size - 4)
        interval = 1.0 / rate
        times: list[float] = []
        for _ in range(passes):
            started = time.perf_counter()
            for conn in conns:
                conn.send(frame)
            took = time.perf_counter() - started
            times.append(took)
            time.sleep(max(0.0, interval - took))
        times.sort()
        return {
            "subs": subs,
            "frame_bytes": len(frame),
            "passes": passes,
            "pass_ms_median": round(statistics.median(times) * 1e3, 2),
            "pass_ms_p90": round(times[int(len(times) * 0.9)] * 1e3, 2),
            "pass_ms_p99": round(times[min(len(times) - 1, int(len(times) * 0.99))] * 1e3, 2),
            "send_us": round(statistics.median(times) / subs * 1e6, 2),
        }
    finally:
        os.sched_setaffinity(0, affinity)
        for conn in conns:
            conn.close()
        listener.close()
        reader.kill()
        reader.communicate()


def run_f2(args: argparse.Namespace) -> dict[str, Any]:
    cmd = [
        sys.executable, "-m", "bench", "--target", "realtime", "--scenarios", "F2",
        "--start-redis", "--publish", "http", "--subs", str(args.subs),
        "--duration", str(args.duration), "--repeat", "1",
    ]  # fmt: skip
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    path = next(line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("results: "))
    report = json.loads(Path(path).read_text())
    run = report["targets"]["realtime"]["scenarios"]["F2"]["runs"][0]
    latency = run.get("loadgen", run).get("latency_ms", {})
    return {"p50_ms": latency.get("p50"), "p99_ms": latency.get("p99"), "results": path}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--subs", type=int, default=1000)
    p.add_argument("--size", type=int, default=130, help="frame bytes (F2's are about 130)")
    p.add_argument("--rate", type=float, default=20, help="passes a second (F2's broadcasts)")
    p.add_argument("--passes", type=int, default=200)
    p.add_argument("--f2", action="store_true", help="also run F2 and compare its p99")
    p.add_argument("--duration", type=float, default=10, help="F2's publish seconds")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--server-cpu", default="0")
    p.add_argument("--loadgen-cpu", default="1")
    args = p.parse_args()
    for _ in range(args.repeat):
        floor = measure_floor(
            args.subs, args.size, args.rate, args.passes, (args.server_cpu, args.loadgen_cpu)
        )
        print(json.dumps({"floor": floor}))
        if args.f2:
            f2 = run_f2(args)
            ratio = f2["p99_ms"] / floor["pass_ms_median"] if f2["p99_ms"] else None
            print(json.dumps({"f2": f2, "p99_over_floor": round(ratio, 2) if ratio else None}))


if __name__ == "__main__":
    main()
