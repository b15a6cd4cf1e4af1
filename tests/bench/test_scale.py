"""bench/scale.py and the load generator's scale flags, at a tiny size: the source addresses
it dials from, F3's channels of K subscribers, several loadgens against one gateway."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import struct
from collections import Counter
from pathlib import Path

import pytest

from bench import run as bench
from bench import scale
from realtime.testing.gateway import spawn_gateway
from realtime.testing.waiting import wait_until_async

EMBEDDED = {
    "BROADCAST_MQ_TYPE": "memory",
    "PRESENCE_STORE": "memory",
    "WS_MAX_FRAMES_PER_SECOND": "0",
}


def test_enough_source_addresses_for_the_ports_of_each(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scale, "port_range", lambda: 28232)  # Linux's default range
    assert scale.source_ips(100) == ["127.0.0.2"]
    # 100,000 connections at nine tenths of 28,232 ports an address: four addresses.
    assert scale.source_ips(100_000) == ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]
    assert len(scale.source_ips(100, minimum=3)) == 3


@pytest.fixture(scope="module")
def loadgen() -> Path:
    if shutil.which("go") is None and not bench.LOADGEN.exists():
        pytest.skip("the load generator needs Go to build")
    bench.build_loadgen()
    return bench.LOADGEN


def established_peers(port: int) -> Counter[str]:
    """Remote addresses of the established TCP connections whose local port is `port`."""
    peers: Counter[str] = Counter()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        f = line.split()
        local, remote, state = f[1], f[2], f[3]
        if state != "01" or int(local.split(":")[1], 16) != port:
            continue
        ip = socket.inet_ntoa(struct.pack("<I", int(remote.split(":")[0], 16)))
        peers[ip] += 1
    return peers


async def read_json(stream: asyncio.StreamReader) -> dict[str, object]:
    while line := await stream.readline():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            return obj
    raise AssertionError("the loadgen closed its output without a JSON line")


@pytest.mark.integration
async def test_subscribers_dial_from_each_source_address_in_turn(
    loadgen: Path, tmp_path: Path
) -> None:
    async with spawn_gateway(EMBEDDED, str(tmp_path / "gw.log")) as gw:
        port = int(gw.url.rsplit(":", 1)[1])
        proc = await asyncio.create_subprocess_exec(
            str(loadgen),
            *("-mode", "idle", "-subs", "40", "-url", gw.ws_url, "-timeout", "60s"),
            *("-source-ips", "127.0.0.2,127.0.0.3"),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert proc.stdin is not None and proc.stdout is not None
        try:
            ready = await asyncio.wait_for(read_json(proc.stdout), 60)
            assert ready == {"ready": True, "connected": 40}

            async def spread() -> bool:
                # The publisher dials from the default address; the subscribers from the two.
                peers = established_peers(port)
                return peers["127.0.0.2"] == 20 and peers["127.0.0.3"] == 20

            assert await wait_until_async(spread, 10, message="20 from each source address")
        finally:
            proc.stdin.close()
            final = await asyncio.wait_for(read_json(proc.stdout), 30)
            await proc.wait()
        assert final["connect_failed"] == 0 and final["disconnects"] == 0


@pytest.mark.integration
async def test_f3_groups_owe_each_broadcast_to_its_channel_of_k(
    loadgen: Path, tmp_path: Path
) -> None:
    async with spawn_gateway(EMBEDDED, str(tmp_path / "gw.log")) as gw:
        proc = await asyncio.create_subprocess_exec(
            str(loadgen),
            *("-mode", "channels", "-group-size", "5", "-subs", "40", "-url", gw.ws_url),
            *("-rate", "40", "-duration", "1s", "-drain", "5s", "-timeout", "60s"),
            stdout=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None
        res = await asyncio.wait_for(read_json(proc.stdout), 60)
        assert await proc.wait() == 0, res
    assert res["ready"] == 40
    sent = res["sent"]
    assert isinstance(sent, int) and sent >= 20
    # 8 channels of 5: every broadcast is owed to the 5 of one channel, and reaches them.
    assert res["expected"] == 5 * sent
    assert res["received"] == res["expected"] and res["lost"] == 0


@pytest.mark.integration
def test_c100k_adds_up_several_loadgens_against_one_gateway(loadgen: Path, tmp_path: Path) -> None:
    out = tmp_path / "c.json"
    code = scale.main(
        ["c100k", "--conns", "61", "--loadgens", "2", "--no-build", "--out", str(out)]
    )
    report = json.loads(out.read_text())
    (run,) = report["runs"]
    assert code == 0, run.get("error")
    assert [lg["subscribers"] for lg in run["loadgens"]] == [31, 30]
    assert report["source_ips"] == [["127.0.0.2"], ["127.0.0.3"]]
    assert run["ready"] == 61 and run["connected"] == 61
    assert run["connect_rate"] == pytest.approx(61 / max(lg["connect_s"] for lg in run["loadgens"]))
    assert run["rss_kb_after"] > run["rss_kb_before"]
    assert run["rss_kb_per_conn"] == pytest.approx(
        (run["rss_kb_after"] - run["rss_kb_before"]) / 61
    )
