"""schemathesis against a real gateway's own /openapi.json: no 5xx, every response as the
document says (run with the CLI schemathesis ships, bounded in examples and time)."""

from __future__ import annotations

import asyncio
import shutil
import sys
from pathlib import Path

import pytest

from realtime.testing.gateway import spawn_gateway

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


@pytest.mark.parametrize("api_keys", ["", "k" * 20])
async def test_http_api_conforms_to_its_openapi_document(tmp_path: Path, api_keys: str) -> None:
    if not SCHEMATHESIS.exists() and shutil.which("schemathesis") is None:
        pytest.fail("schemathesis is a dev dependency: make install")
    env = {
        "BROADCAST_MQ_TYPE": "memory",
        "PRESENCE_STORE": "memory",
        "API_KEYS": api_keys,
        "HISTORY_CHANNELS": "*",  # so /api/history answers pages, and /api/event offsets
    }
    # A retried Idempotency-Key with another body is refused with 422 by design (docs/protocol.md);
    # schemathesis reuses one generated header value across different bodies.
    (tmp_path / "schemathesis.toml").write_text(
        "[checks.positive_data_acceptance]\n"
        'expected-statuses = ["2XX", "3XX", 401, 403, 404, 409, 422, 429, "5XX"]\n'
    )
    async with spawn_gateway(env, str(tmp_path / "gateway.log")) as gw:
        run = await asyncio.create_subprocess_exec(
            str(SCHEMATHESIS), "run", gw.url + "/openapi.json", "--checks", "all",
            "--max-examples", "60", "--seed", "1", "--request-timeout", "5", "--no-color",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=tmp_path,
        )  # fmt: skip
        output, _ = await asyncio.wait_for(run.communicate(), 100)
    report = output.decode(errors="replace")
    assert run.returncode == 0, report[-4000:]
