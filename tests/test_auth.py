from __future__ import annotations

import time

import jwt
import pytest
from jwt.warnings import InsecureKeyLengthWarning

from realtime.auth import Authenticator
from realtime.errors import AuthError
from realtime.testing.gateway import make_settings

SECRET = "s3cret-for-tests-only-0123456789abcdef"


def token(claims: dict[str, object], key: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode({"exp": int(time.time()) + 60, **claims}, key, algorithm=algorithm)


def auth(**env: str) -> Authenticator:
    return Authenticator(make_settings(JWT_SECRET=SECRET, **env))


async def test_user_id_query_without_secret() -> None:
    identity = await Authenticator(make_settings()).identify({}, {"user_id": "alice"})
    assert identity.user_id == "alice" and identity.grants is None and identity.expires is None


async def test_missing_user_id_without_secret() -> None:
    with pytest.raises(AuthError) as info:
        await Authenticator(make_settings()).identify({}, {})
    assert info.value.status == 400


@pytest.mark.parametrize("where", ["header", "token", "access_token"])
async def test_token_accepted_from_each_place(where: str) -> None:
    t = token({"sub": "bob"})
    headers = {"authorization": f"Bearer {t}"} if where == "header" else {}
    query = {where: t} if where != "header" else {}
    identity = await auth().identify(headers, query)
    assert identity.user_id == "bob" and identity.expires is not None


async def test_user_id_query_is_ignored_with_secret() -> None:
    t = token({"sub": "bob"})
    assert (await auth().identify({}, {"token": t, "user_id": "mallory"})).user_id == "bob"


async def test_custom_claim_then_fallbacks() -> None:
    a = auth(JWT_USER_CLAIM="uid")
    assert (await a.verify(token({"uid": "u1", "sub": "s"}))).user_id == "u1"
    assert (await a.verify(token({"user_id": "u2", "sub": "s"}))).user_id == "u2"
    assert (await a.verify(token({"sub": "s"}))).user_id == "s"


async def test_longer_secret_allows_longer_hashes() -> None:
    long_secret = "x" * 64
    a = Authenticator(make_settings(JWT_SECRET=long_secret))
    assert (await a.verify(token({"sub": "h"}, long_secret, "HS512"))).user_id == "h"
    # A 38-byte secret is too short for HS384 (RFC 7518 wants the hash's length).
    with pytest.warns(InsecureKeyLengthWarning):  # PyJWT agrees when signing
        short = token({"sub": "h"}, SECRET, "HS384")
    with pytest.raises(AuthError, match="not allowed"):
        await auth().verify(short)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: token({"sub": "x"}, key="another-secret-of-enough-length-000"), "invalid token"),
        (lambda: token({"sub": "x", "exp": int(time.time()) - 10}), "expired"),
        (lambda: token({"sub": "x"}, key="", algorithm="none"), "invalid token"),
        (lambda: token({"name": "no id"}), "no user id"),
        (lambda: "not.a.jwt", "invalid token"),
        (lambda: jwt.encode({"sub": "x"}, SECRET, algorithm="HS256"), '"exp"'),
        (lambda: token({"sub": "x", "channels": ["room"]}), "channels"),
        (lambda: token({"sub": "x", "channels": {"room": ["own"]}}), "unknown right"),
    ],
)
async def test_refused_tokens(make: object, reason: str) -> None:
    with pytest.raises(AuthError) as info:
        await auth().identify({}, {"token": make()})  # type: ignore[operator]
    assert reason in str(info.value)
    assert info.value.status == 401


async def test_exp_not_required_with_the_seed_setting() -> None:
    t = jwt.encode({"sub": "old"}, SECRET, algorithm="HS256")
    identity = await auth(JWT_REQUIRE_EXP="0").verify(t)
    assert identity.user_id == "old" and identity.expires is None


async def test_missing_token_with_secret() -> None:
    with pytest.raises(AuthError, match="JWT is required"):
        await auth().identify({}, {"user_id": "alice"})
