"""Who is connecting: an HS256 JWT when JWT_SECRET is set, else ``?user_id=`` (development)."""

from __future__ import annotations

from collections.abc import Mapping

import jwt

from realtime.errors import AuthError

ALGORITHMS = ["HS256"]  # pinned: a token's own "alg" header is never trusted


def token_from(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    authorization = headers.get("authorization", "")
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return query.get("token") or query.get("access_token") or None


def identify(
    headers: Mapping[str, str],
    query: Mapping[str, str],
    secret: str | None,
    user_claim: str = "sub",
) -> str:
    """The connection's user id, or :class:`AuthError` saying why there is none."""
    if secret is None:
        user_id = query.get("user_id", "").strip()
        if not user_id:
            raise AuthError("user_id query parameter is required (JWT_SECRET is not set)", 400)
        return user_id
    token = token_from(headers, query)
    if token is None:
        raise AuthError(
            "a JWT is required: Authorization: Bearer <token>, ?token= or ?access_token="
        )
    try:
        claims = jwt.decode(token, secret, algorithms=ALGORITHMS, options={"verify_aud": False})
    except jwt.ExpiredSignatureError:
        raise AuthError("token expired") from None
    except jwt.InvalidTokenError as exc:
        raise AuthError(f"invalid token: {exc}") from None
    for claim in (user_claim, "user_id", "sub"):
        value = claims.get(claim)
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
            return str(value)
    raise AuthError(f"token has no user id claim ({user_claim!r}, 'user_id' or 'sub')")
