"""GET /api/history on a real embedded gateway: pages, limits, keys, refusals."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from realtime.testing.gateway import Gateway, make_settings, run_gateway

KEY = "k" * 16
LIMITED = "l" * 16


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    settings = make_settings(
        HISTORY_CHANNELS="hist.*", HISTORY_SIZE="5", API_KEYS=f"{KEY},{LIMITED}:other.*"
    )
    async with run_gateway(settings) as gw:
        yield gw


async def test_pages_through_history(gateway: Gateway) -> None:
    auth = {"authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(base_url=gateway.url, headers=auth) as http:
        for n in range(7):
            response = await http.post("/api/event", json={"channel": "hist.a", "payload": n})
            assert response.json()["offset"] == n + 1
        first = (await http.get("/api/history", params={"channel": "hist.a", "limit": 2})).json()
        # Size 5: offsets 3..7 are kept.
        assert (first["offset"], first["first"], first["next"]) == (7, 3, 4)
        assert [(p["offset"], p["payload"]) for p in first["publications"]] == [(3, 2), (4, 3)]
        assert first["publications"][0]["event"] == "message" and first["epoch"]
        rest = (
            await http.get("/api/history", params={"channel": "hist.a", "since": first["next"]})
        ).json()
        assert [p["offset"] for p in rest["publications"]] == [5, 6, 7]
        assert rest["next"] is None


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({}, 400),
        ({"channel": "plain"}, 404),
        ({"channel": "hist.a", "since": "-1"}, 400),
        ({"channel": "hist.a", "limit": "-1"}, 400),
        ({"channel": "hist.a", "since": str(2**62 + 1)}, 400),
        ({"channel": "hist.a", "limit": "x"}, 400),
    ],
)
async def test_bad_requests_get_a_json_error(
    gateway: Gateway, params: dict[str, str], status: int
) -> None:
    async with httpx.AsyncClient(base_url=gateway.url, headers={"x-api-key": KEY}) as http:
        response = await http.get("/api/history", params=params)
    assert response.status_code == status and response.json()["error"]


async def test_keys_guard_history_as_they_guard_publishing(gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        assert (await http.get("/api/history", params={"channel": "hist.a"})).status_code == 401
        limited = await http.get(
            "/api/history", params={"channel": "hist.a"}, headers={"x-api-key": LIMITED}
        )
        assert limited.status_code == 403
