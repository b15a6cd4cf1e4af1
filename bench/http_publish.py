"""What ``POST /api/event`` costs end to end, and how many it serves with subscribers attached.

One gateway (or two builds, taking turns) pinned to the server core, 1,000 WebSocket
subscribers on one channel held by the Go load generator (``-mode idle``), and this driver
publishing over HTTP on the load generator's core, in one of two shapes:

- ``pipelined``: one connection, ``--depth`` requests written before their answers are read
  (HTTP/1.1 pipelining; answers come back in order);
- ``pool``: ``--connections`` kept-alive connections, one request at a time each.

It prints publishes/s (answered 200) and deliveries/s (publishes x subscribers, checked against
the gateway's own fan-out counter on ``/metrics``), and with ``--profile`` where the gateway's
time goes: ``py-spy record`` on the gateway during the run, summed by function (own samples)
and by the lines of ours on the stack. Bounded: each run lasts ``--duration`` seconds.

    python -m bench.http_publish --mode pipelined --duration 5
    python -m bench.http_publish --mode pool --connections 8 --profile
    python -m bench.http_publish --baseline-cmd "env PYTHONPATH=/tmp/before python -P -m realtime"
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.run import HOST, LOADGEN, REALTIME_COMMAND, Server, build_loadgen, realtime_env
from realtime.testing.waiting import free_port

CHANNEL = "bench"
PAYLOAD = b'{"t":0,"s":0,"p":"' + b"x" * 55 + b'"}'  # about 100 bytes, as the loadgen's
BODY = b'{"channel":"%s","event":"m","payload":%s}' % (CHANNEL.encode(), PAYLOAD)
REQUEST = (
    b"POST /api/event HTTP/1.1\r\nhost: %s\r\ncontent-type: application/json\r\n"
    b"content-length: %d\r\n\r\n%s" % (HOST.encode(), len(BODY), BODY)
)
STATUS = re.compile(rb"HTTP/1\.1 (\d{3}) ")
LINE = re.compile(r":\d+\)$")
FANOUT = re.compile(rb'^realtime_messages_out_total\{kind="broadcast"\} ([0-9.e+]+)$', re.M)


class Answers:
    """Counts the answers in a stream of HTTP/1.1 responses (each with a content-length)."""

    def __init__(self) -> None:
        self.ok = 0
        self.other: collections.Counter[int] = collections.Counter()
        self._buf = b""

    def feed(self, data: bytes) -> int:
        buf = self._buf + data
        seen = 0
        while True:
            head_end = buf.find(b"\r\n\r\n")
            if head_end < 0:
                break
            head = buf[:head_end]
            match = re.search(rb"(?i)content-length: *(\d+)", head)
            size = int(match.group(1)) if match else 0
            if len(buf) < head_end + 4 + size:
                break
            status = STATUS.match(head)
            code = int(status.group(1)) if status else 0
            if code == 200:
                self.ok += 1
            else:
                self.other[code] += 1
            buf = buf[head_end + 4 + size :]
            seen += 1
        self._buf = buf
        return seen


async def pipelined(port: int, depth: int, duration: float) -> Answers:
    reader, writer = await asyncio.open_connection(HOST, port)
    answers = Answers()
    outstanding = 0
    end = time.monotonic() + duration
    while time.monotonic() < end:
        if outstanding < depth:
            writer.write(REQUEST * (depth - outstanding))
            outstanding = depth
        outstanding -= answers.feed(await reader.read(1 << 16))
    while outstanding > 0:
        data = await asyncio.wait_for(reader.read(1 << 16), 10)
        if not data:
            break
        outstanding -= answers.feed(data)
    writer.close()
    return answers


async def pool(port: int, connections: int, duration: float) -> Answers:
    answers = Answers()
    end = time.monotonic() + duration

    async def one() -> None:
        reader, writer = await asyncio.open_connection(HOST, port)
        while time.monotonic() < end:
            writer.write(REQUEST)
            while not answers.feed(await reader.read(1 << 16)):
                pass
        writer.close()

    await asyncio.gather(*(one() for _ in range(connections)))
    return answers


def fanout_total(port: int) -> float:
    import urllib.request

    with urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=5) as response:
        match = FANOUT.search(response.read())
    return float(match.group(1)) if match else float("nan")


def pyspy() -> str:
    """py-spy (a [dev] dependency): beside this interpreter, or on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if found is None:
        sys.exit("bench: --profile needs py-spy (pip install -e '.[dev]')")
    return found


def profile_summary(raw: Path, top: int) -> dict[str, Any]:
    """py-spy's collapsed stacks -> the functions with the most own samples, and the share of
    samples under each of our own functions (realtime/...), for the table in benchmarks.md."""
    own: collections.Counter[str] = collections.Counter()
    under: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        # "func (path/file.py:line)" -> "func (file.py)": summed by function, not by line.
        frames = [LINE.sub(")", f) for f in stack.split(";")]
        own[frames[-1]] += count
        for name in {f for f in frames if "realtime/" in f or "starlette/" in f}:
            under[name] += count

    def share(n: int) -> float:
        return round(100 * n / total, 1) if total else 0.0

    return {
        "samples": total,
        "own": [(name, share(n)) for name, n in own.most_common(top)],
        "under": [(name, share(n)) for name, n in under.most_common(top)],
    }


def run_once(cmd: list[str], args: argparse.Namespace, label: str) -> dict[str, Any]:
    port = free_port()
    env = realtime_env(port)
    if args.redis:
        env.update(BROADCAST_MQ_TYPE="redis", PRESENCE_STORE="redis", REDIS_URL=args.redis)
    server = Server(label, cmd, env, port, args.server_cpu)
    server.start()
    loadgen = subprocess.Popen(
        [
            "taskset",
            "-c",
            args.loadgen_cpu,
            str(LOADGEN),
            "-mode",
            "idle",
            "-subs",
            str(args.subs),
            "-channel",
            CHANNEL,
            "-url",
            f"ws://{HOST}:{port}/ws",
            "-hold",
            f"{int(args.duration * 4 + 60)}s",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    spy = None
    raw = Path(tempfile.mkstemp(suffix=".txt")[1])
    try:
        assert loadgen.stdout is not None
        ready = json.loads(loadgen.stdout.readline() or "{}")
        if not ready.get("ready"):
            raise RuntimeError(f"{label}: subscribers not ready: {ready}")
        # Warm-up: the first requests pay for imports and caches.
        asyncio.run(pipelined(port, 10, 0.5))
        before = fanout_total(port)
        if args.profile:
            spy = subprocess.Popen(
                [
                    pyspy(),
                    "record",
                    "--pid",
                    str(server.pid),
                    "--rate",
                    "500",
                    "--format",
                    "raw",
                    "--output",
                    str(raw),
                    "--duration",
                    str(int(args.duration)),
                    "--nonblocking",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(0.5)  # py-spy attaches
        started = time.monotonic()
        if args.mode == "pipelined":
            answers = asyncio.run(pipelined(port, args.depth, args.duration))
        else:
            answers = asyncio.run(pool(port, args.connections, args.duration))
        elapsed = time.monotonic() - started
        fanned = fanout_total(port) - before
        if spy is not None:
            spy.wait(args.duration + 30)
        result: dict[str, Any] = {
            "target": label,
            "publishes_per_s": round(answers.ok / elapsed),
            "deliveries_per_s": round(answers.ok * ready.get("connected", 0) / elapsed),
            "fanned_out_per_s": round(fanned / elapsed),
            "not_200": dict(answers.other),
            "subscribers": ready.get("connected"),
        }
        if spy is not None and raw.stat().st_size:
            result["profile"] = profile_summary(raw, args.top)
        return result
    finally:
        if loadgen.stdin is not None:
            loadgen.stdin.close()
        try:
            out, _ = loadgen.communicate(timeout=30)
            held = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
            if held.get("disconnects"):
                print(f"{label}: {held['disconnects']} subscribers disconnected", file=sys.stderr)
        except (subprocess.TimeoutExpired, ValueError):
            loadgen.kill()
        server.stop()
        raw.unlink(missing_ok=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--mode", choices=("pipelined", "pool"), default="pipelined")
    p.add_argument("--depth", type=int, default=64, help="pipelined: requests in flight")
    p.add_argument("--connections", type=int, default=8, help="pool: kept-alive connections")
    p.add_argument("--subs", type=int, default=1000)
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--realtime-cmd", help="the gateway (default: this checkout's)")
    p.add_argument("--baseline-cmd", help="another build, run in turns with the gateway")
    p.add_argument("--profile", action="store_true", help="py-spy the gateway during each run")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--server-cpu", default="0")
    p.add_argument("--loadgen-cpu", default="1")
    p.add_argument("--redis", help="a Redis URL: broker and presence through it (else embedded)")
    args = p.parse_args()
    build_loadgen()
    targets = [
        ("realtime", shlex.split(args.realtime_cmd) if args.realtime_cmd else REALTIME_COMMAND)
    ]
    if args.baseline_cmd:
        targets.insert(0, ("baseline", shlex.split(args.baseline_cmd)))
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label, _ in targets}
    for _ in range(args.repeat):
        for label, cmd in targets:
            result = run_once(cmd, args, label)
            runs[label].append(result)
            profile = result.pop("profile", None)
            print(json.dumps(result))
            if profile is not None:
                print(f"  {profile['samples']} samples; own time:")
                for name, share in profile["own"]:
                    print(f"    {share:5.1f} %  {name}")
                print("  under (ours and Starlette's):")
                for name, share in profile["under"]:
                    print(f"    {share:5.1f} %  {name}")
    for label, results in runs.items():
        rates = [r["deliveries_per_s"] for r in results]
        print(f"{label}: deliveries/s median {statistics.median(rates):,.0f} of {rates}")
    if len(runs) == 2:
        base, now = (statistics.median(r["deliveries_per_s"] for r in runs[k]) for k in runs)
        print(f"realtime/baseline: {now / base:.2f}x")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
