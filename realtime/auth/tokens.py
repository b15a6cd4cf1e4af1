"""Who is connecting: a verified JWT, or ``?user_id=`` when no key is configured (development).

The key is one of ``JWT_SECRET`` (HMAC), ``JWT_PUBLIC_KEY`` (RSA, EC, Ed25519) or
``JWT_JWKS_URL`` (keys picked by the token's ``kid``); the algorithms each may verify are
pinned by the key's type (:mod:`realtime.auth.keys`). A token never reaches a log line or an
error message: errors say what is wrong with it, never what it holds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jwt

from realtime.auth.grants import Grants, grants_from
from realtime.auth.keys import JWKS_ALGORITHMS
from realtime.errors import AuthError

if TYPE_CHECKING:  # config imports realtime.auth.keys: no cycle at run time
    from realtime.config import Settings

JWKS_FETCH_TIMEOUT = 5.0
log = logging.getLogger("realtime.auth")


@dataclass(frozen=True, slots=True)
class Identity:
    """A connection's user, when its token expires (Unix seconds), and what it grants
    (``grants`` is None without a token: development identity)."""

    user_id: str
    expires: float | None = None
    grants: Grants | None = None


def token_from(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    authorization = headers.get("authorization", "")
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return query.get("token") or query.get("access_token") or None


class Authenticator:
    """Turns an upgrade request (or a ``refresh`` frame's token) into an :class:`Identity`."""

    def __init__(self, settings: Settings) -> None:
        self._user_claim = settings.jwt_user_claim
        self._audience = list(settings.jwt_audience) or None
        self._issuer = settings.jwt_issuer
        self._options: jwt.types.Options = {
            "require": ["exp"] if settings.jwt_require_exp else [],
            # Without JWT_AUDIENCE a token's aud is not checked, as the seed did.
            "verify_aud": self._audience is not None,
        }
        self._algorithms = list(settings.jwt_algorithms)
        self._key: Any = settings.jwt_secret or settings.jwt_public_key
        self._jwks: jwt.PyJWKClient | None = None
        if settings.jwt_jwks_url is not None:
            self._jwks = jwt.PyJWKClient(
                settings.jwt_jwks_url,
                lifespan=settings.jwt_jwks_cache_seconds,
                # PyJWT's rate limit: an unknown kid refetches the set at most this often.
                cooldown_duration=settings.jwt_jwks_min_refresh_seconds,
                timeout=JWKS_FETCH_TIMEOUT,
            )

    @property
    def enabled(self) -> bool:
        """Whether connections need a token."""
        return self._key is not None or self._jwks is not None

    async def identify(self, headers: Mapping[str, str], query: Mapping[str, str]) -> Identity:
        """The connection's identity, or :class:`AuthError` saying why there is none."""
        if not self.enabled:
            user_id = query.get("user_id", "").strip()
            if not user_id:
                raise AuthError("user_id query parameter is required (no JWT key is set)", 400)
            return Identity(user_id)
        token = token_from(headers, query)
        if token is None:
            raise AuthError(
                "a JWT is required: Authorization: Bearer <token>, ?token= or ?access_token="
            )
        return await self.verify(token)

    async def verify(self, token: str) -> Identity:
        key, algorithms = await self._key_for(token)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=algorithms,
                audience=self._audience,
                issuer=self._issuer,
                options=self._options,
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("token expired") from None
        except jwt.ImmatureSignatureError:
            raise AuthError("token not yet valid (nbf is in the future)") from None
        except jwt.InvalidTokenError as exc:
            raise AuthError(f"invalid token: {exc}") from None
        user_id = self._user_id(claims)
        try:
            grants = grants_from(claims, user_id)
        except ValueError as exc:
            raise AuthError(f"invalid token: {exc}") from None
        exp = claims.get("exp")
        return Identity(user_id, float(exp) if exp is not None else None, grants)

    async def _key_for(self, token: str) -> tuple[Any, list[str]]:
        if self._jwks is None:
            return self._key, self._algorithms
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.InvalidTokenError as exc:
            raise AuthError(f"invalid token: {exc}") from None
        if not isinstance(kid, str) or not kid:
            # Refused before any fetch: a token without kid would otherwise refetch the set.
            raise AuthError("invalid token: no kid header (JWT_JWKS_URL picks keys by kid)")
        try:
            # PyJWKClient blocks (urllib): a fetch must not stall the event loop.
            jwk = await asyncio.to_thread(self._jwks.get_signing_key, kid)
        except jwt.PyJWKClientConnectionError:
            raise AuthError("the token's key set could not be fetched; try again", 503) from None
        except jwt.PyJWKClientError as exc:
            # PyJWT raises this one class for an unknown kid and for a set that is not an
            # object (or has no signing key): only the first is the token's fault.
            if str(exc).startswith("Unable to find a signing key"):
                raise AuthError("invalid token: its kid is not in the key set") from None
            log.warning("JWKS unusable: %s", exc)
            raise AuthError("the token's key set is unusable; try again", 503) from None
        except Exception as exc:  # a set that is not JSON, or has no usable key
            log.warning("JWKS unusable: %s", type(exc).__name__)
            raise AuthError("the token's key set is unusable; try again", 503) from None
        if jwk.algorithm_name not in JWKS_ALGORITHMS:
            raise AuthError("invalid token: its key set entry is not an asymmetric signing key")
        return jwk, [jwk.algorithm_name]

    def _user_id(self, claims: Mapping[str, Any]) -> str:
        for claim in (self._user_claim, "user_id", "sub"):
            value = claims.get(claim)
            if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
                return str(value)
        raise AuthError(f"token has no user id claim ({self._user_claim!r}, 'user_id' or 'sub')")
