"""The JWT attacks of issue #9, each against a real gateway: HMAC secrets, PEM public keys and
a JWKS served by a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator

import jwt
import pytest

from realtime.testing.gateway import Gateway, make_settings, run_gateway, ws_client
from realtime.testing.waiting import wait_until_async
from tests.security.helpers import hand_signed, refused
from tests.security.servers import JwksServer, Keys

SECRET = "a-test-secret-that-is-long-enough-for-hs256-000"
GRANT = {"channels": {"room": ["subscribe"]}}


def hs(claims: dict[str, object], key: str = SECRET, exp: bool = True) -> str:
    full = {"exp": int(time.time()) + 60, **claims} if exp else claims
    return jwt.encode(full, key, algorithm="HS256")


async def accepted(url: str, token: str) -> None:
    """The gateway accepts the token and serves the connection as its user."""
    headers = {"Authorization": f"Bearer {token}"}
    async with ws_client(url, additional_headers=headers) as client:
        await client.subscribe("room", "broadcast")


@pytest.fixture
async def hs_gateway() -> AsyncIterator[Gateway]:
    settings = make_settings(JWT_SECRET=SECRET, JWT_AUDIENCE="app", JWT_ISSUER="https://idp")
    async with run_gateway(settings) as gw:
        yield gw


def good(**claims: object) -> dict[str, object]:
    return {"sub": "u", "aud": "app", "iss": "https://idp", **GRANT, **claims}


async def test_valid_hs_token_is_accepted(hs_gateway: Gateway) -> None:
    await accepted(hs_gateway.ws_url, hs(good()))


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: hand_signed({**good(), "exp": int(time.time()) + 60}, "none", b""), "alg"),
        (lambda: hs(good(), key="another-secret-that-is-long-enough-00000"), "Signature"),
        (lambda: hs(good(exp=int(time.time()) - 5)), "token expired"),
        (lambda: hs(good(nbf=int(time.time()) + 300)), "not yet valid"),
        (lambda: hs(good(), exp=False), '"exp"'),
        (lambda: hs(good(aud="other")), "Audience"),
        (lambda: hs({k: v for k, v in good().items() if k != "aud"}), '"aud"'),
        (lambda: hs(good(iss="https://evil")), "issuer"),
        (lambda: hs({k: v for k, v in good().items() if k != "iss"}), '"iss"'),
    ],
    ids=[
        "alg-none",
        "wrong-key",
        "expired",
        "future-nbf",
        "no-exp",
        "wrong-aud",
        "no-aud",
        "wrong-iss",
        "no-iss",
    ],
)
async def test_bad_tokens_are_refused(hs_gateway: Gateway, make: object, reason: str) -> None:
    token = make()  # type: ignore[operator]
    status, body = await refused(hs_gateway.ws_url, token)
    assert status == 401
    assert reason in body
    assert token not in body and token.split(".")[1] not in body


async def test_token_without_exp_with_the_seed_setting() -> None:
    settings = make_settings(JWT_SECRET=SECRET, JWT_REQUIRE_EXP="0")
    async with run_gateway(settings) as gw:
        await accepted(gw.ws_url, hs({"sub": "seed", **GRANT}, exp=False))


@pytest.mark.parametrize("kind", ["rsa", "ec", "ed25519"])
async def test_public_key_tokens(kind: str) -> None:
    keys = Keys(kind, "k1")
    async with run_gateway(make_settings(JWT_PUBLIC_KEY=keys.public_pem)) as gw:
        await accepted(gw.ws_url, keys.token({"sub": "pk", **GRANT}))
        other = Keys(kind, "k2")
        status, body = await refused(gw.ws_url, other.token({"sub": "pk", **GRANT}))
        assert status == 401 and "Signature" in body


async def test_hs_token_keyed_with_the_public_key_is_refused(tmp_path: object) -> None:
    """Algorithm confusion: HS256 over the RSA public key's PEM bytes as the secret."""
    keys = Keys("rsa", "k1")
    async with run_gateway(make_settings(JWT_PUBLIC_KEY=keys.public_pem)) as gw:
        claims = {"sub": "admin", "exp": int(time.time()) + 60, **GRANT}
        forged = hand_signed(claims, "HS256", keys.public_pem.encode())
        status, body = await refused(gw.ws_url, forged)
        # Refused by the pinned algorithm list itself, before PyJWT's own key-type check.
        assert status == 401 and "alg value is not allowed" in body


@pytest.fixture
def jwks() -> Iterator[JwksServer]:
    with JwksServer(Keys("rsa", "old"), Keys("ec", "ec1")).running() as server:
        assert isinstance(server, JwksServer)
        yield server


@pytest.fixture
async def jwks_gateway(jwks: JwksServer) -> AsyncIterator[Gateway]:
    settings = make_settings(JWT_JWKS_URL=jwks.url, JWT_JWKS_MIN_REFRESH_SECONDS="1")
    async with run_gateway(settings) as gw:
        yield gw


async def test_jwks_keys_verify_tokens_and_are_cached(
    jwks: JwksServer, jwks_gateway: Gateway
) -> None:
    for keys in jwks.keys * 2:
        await accepted(jwks_gateway.ws_url, keys.token({"sub": "j", **GRANT}))
    assert len(jwks.calls) == 1


async def test_jwks_refusals(jwks: JwksServer, jwks_gateway: Gateway) -> None:
    rsa_key = jwks.keys[0]
    claims = {"sub": "j", "exp": int(time.time()) + 60, **GRANT}
    cases = [
        (rsa_key.token(claims, kid=None), "no kid"),
        (rsa_key.token(claims, kid="nobody"), "not in the key set"),
        (Keys("rsa", "old").token(claims), "Signature"),  # same kid, another key
        (hand_signed(claims, "HS256", rsa_key.public_pem.encode(), kid="old"), "alg value"),
        (hand_signed(claims, "none", b"", kid="old"), "alg value"),
    ]
    for token, reason in cases:
        status, body = await refused(jwks_gateway.ws_url, token)
        assert status == 401 and reason in body, (reason, body)


async def test_rotated_jwks_is_fetched_on_an_unknown_kid_at_most_once_a_cooldown(
    jwks: JwksServer, jwks_gateway: Gateway
) -> None:
    old = jwks.keys[0]
    await accepted(jwks_gateway.ws_url, old.token({"sub": "r", **GRANT}))
    new = Keys("rsa", "new")
    jwks.keys = [new]  # the identity provider rotates
    fresh = new.token({"sub": "r", **GRANT})
    # Within the cooldown an unknown kid does not refetch: a flood of made-up kids costs the
    # identity provider nothing.
    for _ in range(5):
        status, _body = await refused(jwks_gateway.ws_url, fresh)
        assert status == 401
    assert len(jwks.calls) == 1

    async def accepted_now() -> bool:
        try:
            await accepted(jwks_gateway.ws_url, fresh)
        except Exception:
            return False
        return True

    await wait_until_async(accepted_now, timeout=10, interval=0.2)
    assert len(jwks.calls) == 2
    # The old key left the set: its tokens no longer verify (once the set is refetched).
    status, _body = await refused(jwks_gateway.ws_url, old.token({"sub": "r", **GRANT}))
    assert status == 401


@pytest.mark.parametrize("body", [b"<html>not json</html>", b'{"keys": []}', b"[1, 2]"])
async def test_an_unusable_jwks_answers_503_and_the_gateway_goes_on(
    jwks: JwksServer, body: bytes
) -> None:
    jwks.body = body
    settings = make_settings(JWT_JWKS_URL=jwks.url, JWT_JWKS_MIN_REFRESH_SECONDS="0")
    async with run_gateway(settings) as gw:
        token = jwks.keys[0].token({"sub": "j", **GRANT})
        status, error = await refused(gw.ws_url, token)
        assert status == 503 and "key set" in error
        jwks.body = None  # the identity provider recovers
        await accepted(gw.ws_url, token)


async def test_an_unreachable_jwks_answers_503() -> None:
    with JwksServer().running() as server:
        url = server.url  # closed once this block ends: nothing listens there any more
    settings = make_settings(JWT_JWKS_URL=url)
    async with run_gateway(settings) as gw:
        status, error = await refused(gw.ws_url, Keys("ec", "k").token({"sub": "j"}))
        assert status == 503 and "could not be fetched" in error and "127.0.0.1" not in error


async def test_a_seed_deployment_keeps_working_with_the_documented_settings() -> None:
    """A seed token: HS256, no exp, no channels claim (its secret must be 32 bytes or more)."""
    settings = make_settings(JWT_SECRET=SECRET, JWT_REQUIRE_EXP="0", CHANNEL_POLICY="open")
    seed_token = jwt.encode({"sub": "seed-user"}, SECRET, algorithm="HS256")
    async with run_gateway(settings) as gw, ws_client(gw.ws_url + f"?token={seed_token}") as c:
        await c.subscribe("room1")
        await c.send({"type": "presence_join", "channel": "room1", "payload": {"n": 1}})
        await c.expect("presence_join", user_id="seed-user", meta={"n": 1})
        await c.send({"type": "broadcast", "channel": "room1", "event": "e", "payload": 1})
        await c.expect("broadcast", user_id="seed-user", event="e")
