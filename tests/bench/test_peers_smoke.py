"""A bounded run of the peers' benchmark: realtime-mq and Centrifugo on one row of the table,
300 subscribers for 2 seconds. Skipped when Centrifugo has not been built into the cache
(`make bench-peers` builds it once; CI does not need it)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench import peers, run

pytestmark = pytest.mark.integration


def test_one_row_against_centrifugo(tmp_path: Path) -> None:
    exe = peers.CACHE / f"centrifugo-{peers.CENTRIFUGO_VERSION}" / "centrifugo"
    if not exe.exists() or shutil.which("go") is None or shutil.which("taskset") is None:
        pytest.skip(f"needs Go, taskset and Centrifugo built into {exe.parent}")
    out = tmp_path / "peers.json"
    cmd = [sys.executable, "-m", "bench", "--peers", "centrifugo", "--cases", "F1-w2-memory-ws"]
    cmd += ["--scenarios", "F1", "--quick", "--duration", "2", "--drain", "3", "--out", str(out)]
    p = subprocess.run(cmd, cwd=run.ROOT, capture_output=True, text=True, timeout=170)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    report = json.loads(out.read_text())
    targets = report["cases"]["F1-w2-memory-ws"]["targets"]
    for name in ("realtime", "centrifugo"):
        (res,) = targets[name]["runs"]
        lg = res["loadgen"]
        assert lg["proto"] == ("centrifugo" if name == "centrifugo" else "realtime")
        assert lg["ready"] == 300 and lg["received"] > 0 and lg["lost"] == 0, lg
    row = next(r for r in report["summary"] if r["metric"] == "deliveries/s")
    assert row["best_peer"] == "centrifugo" and row["ratio"] > 0
    assert "realtime/best peer" in p.stdout
