"""GET /client/realtime.js (the browser client, served from the package) and the plain GET of
/ws that tells the browser client why its upgrade was refused."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import jwt
import pytest
from websockets.exceptions import InvalidStatus

from realtime.testing.gateway import make_settings, run_gateway, ws_client

ROOT = Path(__file__).resolve().parents[2]
SECRET = "a-test-secret-that-is-long-enough-for-hs256"


async def test_the_client_module_is_served_with_cors_and_cache_headers() -> None:
    # CORS narrowed for /api/event: the module still loads from any origin.
    settings = make_settings(CORS_ALLOWED_ORIGINS="https://app.example")
    async with run_gateway(settings) as gw, httpx.AsyncClient() as http:
        response = await http.get(
            gw.url + "/client/realtime.js", headers={"origin": "https://elsewhere.example"}
        )
        assert response.status_code == 200
        assert response.content == (ROOT / "realtime/static/client/realtime.js").read_bytes()
        assert response.headers["content-type"] == "text/javascript; charset=utf-8"
        assert response.headers["access-control-allow-origin"] == "*"
        assert response.headers["cache-control"] == "public, max-age=300"
        etag = response.headers["etag"]
        again = await http.get(gw.url + "/client/realtime.js", headers={"if-none-match": etag})
        assert again.status_code == 304
        assert again.content == b""
        other = await http.get(gw.url + "/client/realtime.js", headers={"if-none-match": '"x"'})
        assert other.status_code == 200


async def test_plain_get_of_ws_answers_what_the_upgrade_would_get() -> None:
    settings = make_settings(WS_ALLOWED_ORIGINS="https://app.example")
    async with run_gateway(settings) as gw, httpx.AsyncClient() as http:
        ok = await http.get(gw.url + "/ws?user_id=alice")
        assert ok.status_code == 426
        assert ok.headers["upgrade"] == "websocket"
        missing = await http.get(gw.url + "/ws")
        assert missing.status_code == 400
        assert "user_id" in missing.json()["error"]
        other_origin = await http.get(
            gw.url + "/ws?user_id=alice", headers={"origin": "https://evil.example"}
        )
        assert other_origin.status_code == 403
        assert other_origin.json() == {"error": "origin not allowed"}
        assert other_origin.headers["access-control-allow-origin"] == "*"
        # The upgrade itself is refused the same way.
        with pytest.raises(InvalidStatus) as info:
            async with ws_client(gw.ws_url + "?user_id=alice", origin="https://evil.example"):
                pass
        assert info.value.response.status_code == 403


async def test_plain_get_of_ws_checks_the_token() -> None:
    settings = make_settings(JWT_SECRET=SECRET)
    good = jwt.encode({"sub": "alice", "exp": int(time.time()) + 60}, SECRET, algorithm="HS256")
    expired = jwt.encode({"sub": "alice", "exp": int(time.time()) - 5}, SECRET, algorithm="HS256")
    async with run_gateway(settings) as gw, httpx.AsyncClient() as http:
        assert (await http.get(gw.url + "/ws?token=" + good)).status_code == 426
        refused = await http.get(gw.url + "/ws?token=" + expired)
        assert refused.status_code == 401
        assert "expired" in refused.json()["error"]
        assert (await http.get(gw.url + "/ws?user_id=alice")).status_code == 401


async def test_a_post_to_ws_answers_the_same_and_is_readable_from_any_origin() -> None:
    settings = make_settings(WS_ALLOWED_ORIGINS="https://app.example")
    async with run_gateway(settings) as gw, httpx.AsyncClient() as http:
        allowed = await http.post(
            gw.url + "/ws?user_id=alice", headers={"origin": "https://app.example"}
        )
        assert allowed.status_code == 426
        refused = await http.post(
            gw.url + "/ws?user_id=alice", headers={"origin": "https://evil.example"}
        )
        assert refused.status_code == 403
        assert refused.headers["access-control-allow-origin"] == "*"
