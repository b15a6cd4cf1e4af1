"""The extras name the plugins' distributions, so `make dist` then
`pip install --find-links dist 'realtime-mq[kafka]'` pulls them in from the repo."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def wheel_metadata(source: Path, out: Path) -> tuple[str, str]:
    """Build a wheel of ``source`` as `make dist` does; return its METADATA and entry points."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(source)],
        check=True,
        timeout=300,
    )
    (wheel,) = out.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA")))
        entry_points = archive.read(next(n for n in names if n.endswith("entry_points.txt")))
    return metadata.decode(), entry_points.decode()


@pytest.fixture(scope="module")
def core(tmp_path_factory: pytest.TempPathFactory) -> str:
    return wheel_metadata(ROOT, tmp_path_factory.mktemp("core"))[0]


@pytest.mark.parametrize("name", ["kafka", "rabbitmq"])
def test_extra_names_the_plugin_that_registers_the_broker(
    core: str, name: str, tmp_path: Path
) -> None:
    plugin = f"realtime-mq-{name}"
    assert f'Requires-Dist: {plugin}; extra == "{name}"' in core
    metadata, entry_points = wheel_metadata(ROOT / "plugins" / plugin, tmp_path)
    assert f"Name: {plugin}\n" in metadata
    assert "Requires-Dist: realtime-mq" in metadata
    assert "[realtime.brokers]" in entry_points
    assert f"{name} = " in entry_points
