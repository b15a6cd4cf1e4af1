"""The playground's server side: when it is served, what `/` answers, the start-up line, and
the CORS that lets the page opened from another origin read the server API. The page itself
is tested in a real browser (tests/browser/test_playground.py)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from realtime.config import load_settings
from realtime.errors import ConfigError
from realtime.server.playground import OFF, playground_notice
from realtime.testing.gateway import make_settings, run_gateway, spawn_gateway

SECRET = "a-test-secret-that-is-long-enough-for-hs256"
KEY = "k" * 32


def public_key() -> str:
    return (
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def test_on_by_default() -> None:
    settings = make_settings()
    assert settings.playground is True
    assert playground_notice(settings) == (
        "the playground is served at / (no JWT key or API_KEYS set; PLAYGROUND=0 turns it off)"
    )


@pytest.mark.parametrize("variable", ["JWT_SECRET", "JWT_PUBLIC_KEY", "JWT_JWKS_URL", "API_KEYS"])
def test_off_by_default_on_a_secured_gateway(variable: str) -> None:
    value = {
        "JWT_SECRET": SECRET,
        "JWT_PUBLIC_KEY": public_key(),
        "JWT_JWKS_URL": "https://issuer.example/jwks.json",
        "API_KEYS": KEY,
    }[variable]
    settings = make_settings(**{variable: value})
    assert settings.playground is False
    notice = playground_notice(settings)
    assert notice == f"the playground is off because {variable} is set (PLAYGROUND=1 serves it)"
    assert value not in notice
    # Said outright, it wins.
    assert make_settings(**{variable: value, "PLAYGROUND": "1"}).playground is True


def test_said_outright() -> None:
    off = make_settings(PLAYGROUND="0")
    assert off.playground is False
    assert playground_notice(off) == "the playground is off (PLAYGROUND=0)"
    on = make_settings(PLAYGROUND="1", API_KEYS=KEY)
    assert playground_notice(on) == "the playground is served at / (PLAYGROUND=1)"


def test_a_bad_value_names_the_variable() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({"PLAYGROUND": "maybe"}, env_file=None)
    assert info.value.variable == "PLAYGROUND"
    assert str(info.value) == "PLAYGROUND: 'maybe' is not 1 or 0"


async def test_the_page_and_its_assets_are_served() -> None:
    async with run_gateway(make_settings()) as gw, httpx.AsyncClient(base_url=gw.url) as http:
        root = await http.get("/?gateway=http://127.0.0.1:1")
        # Relative, query kept: the page reads ?gateway= after the redirect.
        assert root.status_code == 302
        assert root.headers["location"] == "playground/?gateway=http://127.0.0.1:1"
        page = await http.get("/playground/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert '<script type="module" src="app.js">' in page.text
        assert page.headers["cache-control"] == "no-cache"
        for asset, kind in (("app.js", "javascript"), ("style.css", "text/css")):
            response = await http.get(f"/playground/{asset}")
            assert response.status_code == 200, asset
            assert kind in response.headers["content-type"]
            assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("env", [{"PLAYGROUND": "0"}, {"JWT_SECRET": SECRET}, {"API_KEYS": KEY}])
async def test_off_answers_404_saying_how_to_turn_it_on(env: dict[str, str]) -> None:
    async with run_gateway(make_settings(**env)) as gw, httpx.AsyncClient(base_url=gw.url) as http:
        for path in ("/", "/playground", "/playground/", "/playground/app.js"):
            response = await http.get(path)
            assert response.status_code == 404, path
            assert response.json() == {"error": OFF}
        # The rest of the gateway is untouched.
        assert (await http.get("/healthz")).status_code == 200


async def test_the_server_api_may_be_read_from_another_origin_without_cookies() -> None:
    settings = make_settings(API_KEYS=KEY, PLAYGROUND="1")
    async with run_gateway(settings) as gw, httpx.AsyncClient(base_url=gw.url) as http:
        # An API key header makes the GET "non-simple": the browser asks first.
        preflight = await http.options(
            "/api/channels",
            headers={
                "origin": "http://page.example",
                "access-control-request-method": "GET",
                "access-control-request-headers": "x-api-key",
            },
        )
        assert preflight.status_code == 200
        assert "GET" in preflight.headers["access-control-allow-methods"]
        assert "access-control-allow-credentials" not in preflight.headers
        read = await http.get(
            "/api/channels", headers={"origin": "http://page.example", "x-api-key": KEY}
        )
        assert read.status_code == 200
        assert read.headers["access-control-allow-origin"] == "*"
        assert "access-control-allow-credentials" not in read.headers


async def test_the_start_up_line_says_whether_and_why(tmp_path: Path) -> None:
    env = {"BROADCAST_MQ_TYPE": "memory", "PRESENCE_STORE": "memory", "API_KEYS": KEY}
    async with spawn_gateway(env, str(tmp_path / "gw.log")) as gw:
        log = gw.log()
    assert "the playground is off because API_KEYS is set (PLAYGROUND=1 serves it)" in log
    assert KEY not in log
