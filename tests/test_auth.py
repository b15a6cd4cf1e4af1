from __future__ import annotations

import time

import jwt
import pytest

from realtime.auth import identify
from realtime.errors import AuthError

SECRET = "s3cret-for-tests-only-0123456789abcdef"


def token(claims: dict[str, object], key: str = SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=algorithm)


def test_user_id_query_without_secret() -> None:
    assert identify({}, {"user_id": "alice"}, None) == "alice"


def test_missing_user_id_without_secret() -> None:
    with pytest.raises(AuthError) as info:
        identify({}, {}, None)
    assert info.value.status == 400


@pytest.mark.parametrize("where", ["header", "token", "access_token"])
def test_token_accepted_from_each_place(where: str) -> None:
    t = token({"sub": "bob"})
    headers = {"authorization": f"Bearer {t}"} if where == "header" else {}
    query = {where: t} if where != "header" else {}
    assert identify(headers, query, SECRET) == "bob"


def test_user_id_query_is_ignored_with_secret() -> None:
    t = token({"sub": "bob"})
    assert identify({}, {"token": t, "user_id": "mallory"}, SECRET) == "bob"


def test_custom_claim_then_fallbacks() -> None:
    assert identify({}, {"token": token({"uid": "u1", "sub": "s"})}, SECRET, "uid") == "u1"
    assert identify({}, {"token": token({"user_id": "u2", "sub": "s"})}, SECRET, "uid") == "u2"
    assert identify({}, {"token": token({"sub": "s"})}, SECRET, "uid") == "s"


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: token({"sub": "x"}, key="another-secret-of-enough-length-000"), "invalid token"),
        (lambda: token({"sub": "x", "exp": int(time.time()) - 10}), "expired"),
        (lambda: token({"sub": "x"}, key="", algorithm="none"), "invalid token"),
        (lambda: token({"name": "no id"}), "no user id"),
        (lambda: "not.a.jwt", "invalid token"),
    ],
)
def test_refused_tokens(make: object, reason: str) -> None:
    with pytest.raises(AuthError) as info:
        identify({}, {"token": make()}, SECRET)  # type: ignore[operator]
    assert reason in str(info.value)
    assert info.value.status == 401


def test_missing_token_with_secret() -> None:
    with pytest.raises(AuthError, match="JWT is required"):
        identify({}, {"user_id": "alice"}, SECRET)
