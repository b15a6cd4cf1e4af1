"""The browser client's npm package (clients/js/) against the module the gateway serves
(realtime/static/client/realtime.js): one file, its unit tests, and what `npm pack` ships.
Node.js and npm come with our machines (tests/browser tests the module in Chromium)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SERVED = ROOT / "realtime/static/client/realtime.js"
PACKAGE = ROOT / "clients/js"


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is needed for the browser client's checks (Node.js and npm)")
    return found


def test_the_npm_package_ships_the_file_the_gateway_serves() -> None:
    # The gateway's copy is the source; `npm pack` copies it over (prepack), and this test
    # catches a commit that changed one and not the other.
    assert (PACKAGE / "realtime.js").read_bytes() == SERVED.read_bytes(), (
        "clients/js/realtime.js differs from realtime/static/client/realtime.js: "
        "cp realtime/static/client/realtime.js clients/js/"
    )


def test_the_module_parses_and_its_unit_tests_pass() -> None:
    node = tool("node")
    subprocess.run([node, "--check", str(SERVED)], check=True, timeout=60)
    run = subprocess.run(
        [node, "--test", "test/"],
        cwd=PACKAGE,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "# fail 0" in run.stdout
    assert "# pass 0" not in run.stdout


def test_npm_pack_holds_the_module_its_types_and_readme() -> None:
    npm = tool("npm")
    run = subprocess.run(
        [npm, "pack", "--dry-run", "--json", "--ignore-scripts"],
        cwd=PACKAGE,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    (packed,) = json.loads(run.stdout)
    assert packed["name"] == "realtime-mq-client"
    files = sorted(entry["path"] for entry in packed["files"])
    assert files == ["README.md", "package.json", "realtime.d.ts", "realtime.js"]
    manifest = json.loads((PACKAGE / "package.json").read_text())
    assert manifest["type"] == "module"
    assert manifest["exports"]["."] == {"types": "./realtime.d.ts", "default": "./realtime.js"}
    assert "realtime/static/client/realtime.js" in manifest["scripts"]["prepack"]
