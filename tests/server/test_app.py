"""The HTTP side of a real gateway: event API, CORS, health, the upgrade's identity."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import httpx
import jwt
import pytest
from websockets.exceptions import InvalidStatus

from realtime.engine.failures import PUBLISH_FAILED
from realtime.server.app import message_id
from realtime.testing.gateway import Gateway, make_settings, run_gateway, ws_client

SECRET = "a-test-secret-that-is-long-enough-for-hs256"


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    settings = make_settings(CORS_ALLOWED_ORIGINS="https://app.example,https://admin.example")
    async with run_gateway(settings) as gw:
        yield gw


async def test_http_event_reaches_websocket_subscribers(gateway: Gateway) -> None:
    async with ws_client(gateway.ws_url + "?user_id=a") as a, httpx.AsyncClient() as http:
        await a.subscribe("room1", "broadcast")
        response = await http.post(
            gateway.url + "/api/event",
            json={"channel": "room1", "event": "user-message", "payload": {"text": "from http"}},
        )
        assert response.status_code == 200
        body = response.json()
        assert body["status"] == "ok" and body["message_id"]
        frame = await a.expect("broadcast", channel="room1", event="user-message")
        assert frame["payload"] == {"text": "from http"}
        assert "user_id" not in frame


async def test_http_event_defaults_to_message(gateway: Gateway) -> None:
    async with ws_client(gateway.ws_url + "?user_id=a") as a, httpx.AsyncClient() as http:
        await a.subscribe("c", "broadcast")
        assert (await http.post(gateway.url + "/api/event", json={"channel": "c"})).is_success
        await a.expect("broadcast", event="message", payload=None)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "invalid event"),
        (b'"room1"', "invalid event"),
        (b'{"event": "e"}', "channel"),
        (b'{"channel": 5}', "channel"),
        (b'{"channel": ""}', "channel"),
        (b'{"channel": "c", "event": 7}', "event"),
        (b"", "not valid JSON"),
    ],
)
async def test_bad_bodies_get_400_with_json_error(
    gateway: Gateway, body: bytes, fragment: str
) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(
            gateway.url + "/api/event", content=body, headers={"content-type": "application/json"}
        )
    assert response.status_code == 400
    assert fragment in response.json()["error"]


async def test_publish_refused_by_the_mq_is_503() -> None:
    async with run_gateway(make_settings()) as gw, httpx.AsyncClient() as http:
        await gw.node.brokers["broadcast"].close()
        response = await http.post(gw.url + "/api/event", json={"channel": "c"})
        assert response.status_code == 503
        # The broker's own text ("memory broker is closed") stays in the log.
        assert response.json()["error"] == PUBLISH_FAILED
        ready = await http.get(gw.url + "/readyz")
        assert ready.status_code == 503


async def test_cors_allowlist(gateway: Gateway) -> None:
    async with httpx.AsyncClient() as http:
        preflight = {"access-control-request-method": "POST"}
        allowed = await http.options(
            gateway.url + "/api/event", headers={"origin": "https://app.example", **preflight}
        )
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == "https://app.example"
        refused = await http.options(
            gateway.url + "/api/event", headers={"origin": "https://evil.example", **preflight}
        )
        assert refused.status_code == 400
        assert "access-control-allow-origin" not in refused.headers
        post = await http.post(
            gateway.url + "/api/event",
            json={"channel": "c"},
            headers={"origin": "https://admin.example"},
        )
        assert post.headers["access-control-allow-origin"] == "https://admin.example"


async def test_cors_default_allows_any_origin() -> None:
    async with run_gateway(make_settings()) as gw, httpx.AsyncClient() as http:
        response = await http.post(
            gw.url + "/api/event", json={"channel": "c"}, headers={"origin": "https://x.example"}
        )
        assert response.headers["access-control-allow-origin"] == "*"


async def test_health_and_readiness(gateway: Gateway) -> None:
    async with httpx.AsyncClient() as http, ws_client(gateway.ws_url + "?user_id=a"):
        health = await http.get(gateway.url + "/healthz")
        assert health.status_code == 200 and health.json()["status"] == "ok"
        assert health.json()["connections"] == 1
        ready = await http.get(gateway.url + "/readyz")
        assert ready.status_code == 200
        assert ready.json()["subscribers"] == {"broadcast": True, "presence": True}


def _token(claims: dict[str, object], key: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=algorithm)


@pytest.fixture
async def jwt_gateway() -> AsyncIterator[Gateway]:
    # A seed deployment's tokens grant no channels: CHANNEL_POLICY=open keeps them working.
    settings = make_settings(JWT_SECRET=SECRET, JWT_USER_CLAIM="uid", CHANNEL_POLICY="open")
    async with run_gateway(settings) as gw:
        yield gw


async def test_jwt_identity_is_the_sender(jwt_gateway: Gateway) -> None:
    token = _token({"uid": "carol", "exp": int(time.time()) + 60})
    headers = {"Authorization": f"Bearer {token}"}
    async with ws_client(jwt_gateway.ws_url + "?user_id=mallory", additional_headers=headers) as c:
        await c.subscribe("c", "broadcast")
        await c.send({"type": "broadcast", "channel": "c", "event": "e", "payload": 1})
        await c.expect("broadcast", user_id="carol")
    async with ws_client(jwt_gateway.ws_url + f"?access_token={token}") as c:
        await c.subscribe("c", "broadcast")


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        (
            lambda: "?token=" + _token({"uid": "x"}, key="wrong-key-but-long-enough-000000"),
            "invalid",
        ),
        (lambda: "?token=" + _token({"uid": "x", "exp": int(time.time()) - 5}), "expired"),
        (lambda: "?token=" + _token({"uid": "x"}, key="", algorithm="none"), "invalid"),
        (lambda: "?user_id=x", "JWT is required"),
        (lambda: "", "JWT is required"),
    ],
)
async def test_jwt_refusals_are_401_with_json(
    jwt_gateway: Gateway, query: object, reason: str
) -> None:
    with pytest.raises(InvalidStatus) as info:
        async with ws_client(jwt_gateway.ws_url + query()):  # type: ignore[operator]
            pass
    response = info.value.response
    assert response.status_code == 401
    assert reason in response.body.decode()
    assert response.body.decode().startswith('{"error":')


async def test_missing_user_id_in_dev_mode_is_400(gateway: Gateway) -> None:
    with pytest.raises(InvalidStatus) as info:
        async with ws_client(gateway.ws_url):
            pass
    assert info.value.response.status_code == 400
    assert b"user_id" in info.value.response.body


def test_message_ids_are_random_uuid4s_in_32_hex_digits() -> None:
    ids = [message_id() for _ in range(200)]
    assert len(set(ids)) == 200
    for mid in ids:
        assert len(mid) == 32 and mid == mid.lower()
        parsed = uuid.UUID(hex=mid)
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
        assert parsed.hex == mid
