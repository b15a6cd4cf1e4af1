"""Attacks on the HTTP API of a real gateway: keys, content type, nesting, names, errors."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from realtime.testing.gateway import Gateway, make_settings, run_gateway, ws_client

KEY = "k" * 20
ORDERS_KEY = "o" * 20


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    keys = f"{KEY},{ORDERS_KEY}:orders.*|news"
    async with run_gateway(make_settings(API_KEYS=keys)) as gw:
        yield gw


async def post(gw: Gateway, body: object, **headers: str) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.post(gw.url + "/api/event", json=body, headers=headers)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": "Bearer wrong-key-of-some-length"},
        {"x-api-key": KEY[:-1]},
        {"authorization": f"Basic {KEY}"},
    ],
)
async def test_publish_without_a_valid_key_is_401(
    gateway: Gateway, headers: dict[str, str]
) -> None:
    response = await post(gateway, {"channel": "c"}, **headers)
    assert response.status_code == 401
    assert "API key" in response.json()["error"]


async def test_either_header_and_every_key_publishes(gateway: Gateway) -> None:
    async with ws_client(gateway.ws_url + "?user_id=a") as a:
        await a.subscribe("orders.1", "broadcast")
        for headers in ({"authorization": f"Bearer {KEY}"}, {"x-api-key": ORDERS_KEY}):
            response = await post(gateway, {"channel": "orders.1", "event": "e"}, **headers)
            assert response.status_code == 200, response.text
            await a.expect("broadcast", channel="orders.1")


@pytest.mark.parametrize("channel", ["orders", "ordersx.1", "news.1", "other"])
async def test_a_key_limited_to_patterns_gets_403_elsewhere(gateway: Gateway, channel: str) -> None:
    response = await post(gateway, {"channel": channel}, **{"x-api-key": ORDERS_KEY})
    assert response.status_code == 403
    assert ORDERS_KEY not in response.text


async def test_the_key_never_reaches_the_log(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    await post(gateway, {"channel": "other"}, **{"x-api-key": ORDERS_KEY})
    await post(gateway, {"channel": "c"}, **{"x-api-key": KEY})
    settings = make_settings(API_KEYS=KEY)
    assert KEY not in repr(settings) and KEY not in repr(settings.api_keys)
    assert KEY not in caplog.text and ORDERS_KEY not in caplog.text


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", ""]
)
async def test_a_cross_site_simple_post_is_415_and_delivers_nothing(content_type: str) -> None:
    # Without API_KEYS (the seed's open API) the content type is what stops a browser's
    # cross-site POST, which needs no preflight for these types.
    settings = make_settings(CORS_ALLOWED_ORIGINS="https://good.example")
    async with run_gateway(settings) as gw, ws_client(gw.ws_url + "?user_id=a") as a:
        await a.subscribe("c", "broadcast")
        async with httpx.AsyncClient() as http:
            response = await http.post(
                gw.url + "/api/event",
                content=b'{"channel":"c","event":"forged"}',
                headers={"content-type": content_type, "origin": "https://evil.example"},
            )
        assert response.status_code == 415
        assert "application/json" in response.json()["error"]
        ok = await http_post_json(gw, {"channel": "c", "event": "real"})
        assert ok.status_code == 200
        await a.expect("broadcast", event="real")  # "forged" never came first


async def test_one_setting_restores_the_seeds_any_content_type() -> None:
    settings = make_settings(HTTP_REQUIRE_JSON="0")
    async with run_gateway(settings) as gw, ws_client(gw.ws_url + "?user_id=a") as a:
        await a.subscribe("c", "broadcast")
        async with httpx.AsyncClient() as http:
            response = await http.post(
                gw.url + "/api/event",
                content=b'{"channel":"c","event":"as-the-seed"}',
                headers={"content-type": "text/plain"},
            )
        assert response.status_code == 200, response.text
        await a.expect("broadcast", event="as-the-seed")


async def http_post_json(gw: Gateway, body: object) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.post(
            gw.url + "/api/event",
            json=body,
            headers={"content-type": "application/json; charset=utf-8"},
        )


async def test_deep_nesting_over_http_is_400_invalid_json(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    body = b'{"channel":"c","payload":' + b"[" * 1000 + b"]" * 1000 + b"}"
    async with httpx.AsyncClient() as http:
        response = await http.post(
            gateway.url + "/api/event",
            content=body,
            headers={"content-type": "application/json", "x-api-key": KEY},
        )
    assert response.status_code == 400
    assert "deeper" in response.json()["error"]
    assert "RecursionError" not in caplog.text


async def test_a_long_event_name_over_http_is_400(gateway: Gateway) -> None:
    response = await post(gateway, {"channel": "c", "event": "e" * 201}, **{"x-api-key": KEY})
    assert response.status_code == 400
    assert "200" in response.json()["error"]
    response = await post(gateway, {"channel": "c", "event": "e" * 200}, **{"x-api-key": KEY})
    assert response.status_code == 200


async def test_openapi_document_is_served(gateway: Gateway) -> None:
    async with httpx.AsyncClient() as http:
        document = (await http.get(gateway.url + "/openapi.json")).json()
    assert set(document["paths"]) == {
        "/api/event",
        "/api/history",
        "/api/channels",
        "/api/presence",
        "/api/presence/stats",
        "/api/disconnect",
        "/api/unsubscribe",
        "/api/batch",
        "/healthz",
        "/readyz",
    }
