"""A third party's broker plugin, end to end: installed into a throwaway environment, found by
entry point, selected with BROADCAST_MQ_TYPE, and held to the contract suite."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from realtime.brokers.registry import available
from realtime.testing.gateway import spawn_gateway, ws_client

EXAMPLE = Path(__file__).resolve().parents[1] / "example_plugin"


@pytest.fixture(scope="module")
def throwaway(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new virtual environment that sees this one's packages, plus the example plugin."""
    env = tmp_path_factory.mktemp("plugin-env") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True, timeout=120)
    python = env / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # Dependencies (realtime-mq itself, pytest) come from the environment running this test.
    ours = sysconfig.get_paths()["purelib"]
    Path(site, "zz_parent_env.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    # Built the way a plugin ships (a wheel), then installed like any package.
    wheels = env.parent / "wheels"
    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps"]
    subprocess.run([*build, "-w", str(wheels), str(EXAMPLE)], check=True, timeout=300)
    (wheel,) = wheels.glob("realtime_mq_example-*.whl")
    install = [str(python), "-m", "pip", "install", "-q", "--no-deps", str(wheel)]
    subprocess.run(install, check=True, timeout=300)
    return python


def test_plugin_is_not_installed_here() -> None:
    # What the throwaway environment finds, it finds because of the install.
    assert "example" not in available()


def test_installed_plugin_is_found_by_entry_point(throwaway: Path) -> None:
    result = subprocess.run(
        [
            str(throwaway),
            "-c",
            "from realtime.brokers.registry import available; print(','.join(available()))",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    assert "example" in result.stdout.strip().split(",")


def test_plugin_passes_the_contract_suite(throwaway: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [
            str(throwaway),
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-rs",
            "-o",
            "asyncio_mode=strict",
            "--rootdir",
            str(tmp_path),
            str(EXAMPLE / "tests"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert " passed" in result.stdout and " failed" not in result.stdout
    # Every case runs but those an in-process broker cannot: no publish_later, no server.
    skipped = [line for line in result.stdout.splitlines() if line.startswith("SKIPPED")]
    for line in skipped:
        assert "no PipelinedBroker" in line or "its server" in line, line


async def test_gateway_runs_on_the_plugin(throwaway: Path, tmp_path: Path) -> None:
    env = {"BROADCAST_MQ_TYPE": "example", "PRESENCE_STORE": "memory"}
    async with spawn_gateway(env, str(tmp_path / "gw.log"), python=str(throwaway)) as gw:
        assert "broker=example" in gw.log().splitlines()[0]
        async with ws_client(gw.ws_url + "?user_id=a") as a:
            await a.subscribe("c", "broadcast")
            await a.send({"type": "broadcast", "channel": "c", "event": "e", "payload": 1})
            await a.expect("broadcast", event="e", user_id="a")
