"""The extras name the plugins' distributions, so `make dist` then
`pip install --find-links dist 'realtime-mq[kafka]'` pulls them in from the repo."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def wheel_metadata(source: Path, out: Path) -> tuple[str, str, list[str]]:
    """Build a wheel of ``source`` as `make dist` does; return its METADATA, its entry points
    and the names of its files."""
    # As `make dist` does: setuptools would pack what an earlier build left in build/.
    shutil.rmtree(source / "build", ignore_errors=True)
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
    return metadata.decode(), entry_points.decode(), names


@pytest.fixture(scope="module")
def core_wheel(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, list[str]]:
    return wheel_metadata(ROOT, tmp_path_factory.mktemp("core"))


@pytest.fixture(scope="module")
def core(core_wheel: tuple[str, str, list[str]]) -> str:
    return core_wheel[0]


def test_the_core_wheel_holds_exactly_the_package_in_the_tree(
    core_wheel: tuple[str, str, list[str]],
) -> None:
    # Nothing else: not a stale module left in setuptools' build/ (the test servers that
    # moved to the plugins once came back that way), not bench/ or tests/.
    tracked = subprocess.run(
        ["git", "ls-files", "realtime/*.py", "realtime/**/*.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    packed = [name for name in core_wheel[2] if name.endswith(".py")]
    assert sorted(packed) == sorted(set(tracked))


def test_the_core_wheel_ships_the_typed_client(core_wheel: tuple[str, str, list[str]]) -> None:
    # `pip install realtime-mq` gives realtime.client, and its types (PEP 561).
    assert "realtime/client/__init__.py" in core_wheel[2]
    assert "realtime/py.typed" in core_wheel[2]


@pytest.fixture(scope="module")
def clean_wheel(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The names in a core wheel built from a copy of the tracked files, as a fresh clone has
    them: in a working tree, the egg-info an editable install left lists every file and
    setuptools ships them even without the package-data setting."""
    tracked = subprocess.run(
        ["git", "ls-files", "pyproject.toml", "README.md", "realtime"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    source = tmp_path_factory.mktemp("clean") / "src"
    for name in tracked:
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ROOT / name, source / name)
    return wheel_metadata(source, tmp_path_factory.mktemp("clean-out"))[2]


def test_the_core_wheel_ships_the_browser_client(clean_wheel: list[str]) -> None:
    # GET /client/realtime.js reads it from the installed package (package data).
    assert "realtime/static/client/realtime.js" in clean_wheel


def test_the_core_wheel_ships_the_playground(clean_wheel: list[str]) -> None:
    # The gateway serves /playground/ from the installed package (package data).
    for name in ("index.html", "app.js", "style.css"):
        assert f"realtime/static/playground/{name}" in clean_wheel


@pytest.mark.parametrize("name", ["kafka", "rabbitmq"])
def test_extra_names_the_plugin_that_registers_the_broker(
    core: str, name: str, tmp_path: Path
) -> None:
    plugin = f"realtime-mq-{name}"
    assert f'Requires-Dist: {plugin}; extra == "{name}"' in core
    metadata, entry_points, _ = wheel_metadata(ROOT / "plugins" / plugin, tmp_path)
    assert f"Name: {plugin}\n" in metadata
    assert "Requires-Dist: realtime-mq" in metadata
    assert "[realtime.brokers]" in entry_points
    assert f"{name} = " in entry_points
