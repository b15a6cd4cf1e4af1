"""Who may connect and do what: the JWT key settings and the channel policy with its hook."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from realtime.auth import keys
from realtime.config.reading import Env, choice, flag, hide_password, parse
from realtime.errors import ConfigError


def token_settings(env: Env) -> dict[str, Any]:
    secret, public_key, jwks_url = (
        env.given(name) for name in ("JWT_SECRET", "JWT_PUBLIC_KEY", "JWT_JWKS_URL")
    )
    given = [n for n, v in (("JWT_SECRET", secret), ("JWT_PUBLIC_KEY", public_key),
             ("JWT_JWKS_URL", jwks_url)) if v is not None]  # fmt: skip
    if len(given) > 1:
        raise ConfigError(given[1], "set only one of JWT_SECRET, JWT_PUBLIC_KEY, JWT_JWKS_URL")
    algorithms: tuple[str, ...] = ()
    try:
        if secret is not None:
            algorithms = keys.hmac_algorithms(secret)
        elif public_key is not None:
            public_key = keys.public_key_pem(public_key)
            algorithms = keys.public_key_algorithms(public_key)
    except ValueError as exc:
        raise ConfigError(given[0], str(exc)) from None
    if jwks_url is not None and urlsplit(jwks_url).scheme not in ("http", "https"):
        raise ConfigError("JWT_JWKS_URL", f"{jwks_url!r} is not an http(s) URL")
    if not given:
        for name in ("JWT_AUDIENCE", "JWT_ISSUER"):
            if env.given(name) is not None:
                raise ConfigError(name, "needs JWT_SECRET, JWT_PUBLIC_KEY or JWT_JWKS_URL")
    audience = env.given("JWT_AUDIENCE") or ""
    return {
        "jwt_secret": secret,
        "jwt_public_key": public_key,
        "jwt_jwks_url": jwks_url,
        "jwt_algorithms": algorithms,
        "jwt_jwks_cache_seconds": parse(
            env, "JWT_JWKS_CACHE_SECONDS", float, "a number of seconds > 0", 0.001
        ),
        "jwt_jwks_min_refresh_seconds": parse(
            env, "JWT_JWKS_MIN_REFRESH_SECONDS", float, "a number of seconds >= 0"
        ),
        "jwt_audience": tuple(a.strip() for a in audience.split(",") if a.strip()),
        "jwt_issuer": env.given("JWT_ISSUER"),
        "jwt_require_exp": flag("JWT_REQUIRE_EXP", env.value("JWT_REQUIRE_EXP")),
        "jwt_expiry_grace": parse(
            env, "JWT_EXPIRY_GRACE_SECONDS", float, "a number of seconds >= 0"
        ),
    }


def access_settings(env: Env) -> dict[str, Any]:
    tokens = any(env.given(n) for n in ("JWT_SECRET", "JWT_PUBLIC_KEY", "JWT_JWKS_URL"))
    hook = env.given("AUTH_HOOK_URL")
    given_policy = env.given("CHANNEL_POLICY")
    # Safe by default: with tokens, only what they grant. Without a JWT key identities are
    # not verified (any ?user_id=), so a policy could only refuse everything: open.
    policy = (given_policy or ("token" if tokens else "open")).lower()
    choice("CHANNEL_POLICY", policy, ("open", "token"))
    if policy == "token" and not tokens and hook is None:
        raise ConfigError(
            "CHANNEL_POLICY",
            "token needs JWT_SECRET, JWT_PUBLIC_KEY or JWT_JWKS_URL (or AUTH_HOOK_URL): "
            "without them nothing could be granted",
        )
    if hook is not None and urlsplit(hook).scheme not in ("http", "https"):
        raise ConfigError("AUTH_HOOK_URL", f"{hide_password(hook)!r} is not an http(s) URL")
    failure = choice("AUTH_HOOK_FAILURE", env.value("AUTH_HOOK_FAILURE").lower(),
                      ("closed", "open"))  # fmt: skip
    return {
        "channel_policy": policy,
        "auth_hook_url": hook,
        "auth_hook_timeout": parse(
            env, "AUTH_HOOK_TIMEOUT_SECONDS", float, "a number of seconds > 0", 0.001
        ),
        "auth_hook_cache_seconds": parse(
            env, "AUTH_HOOK_CACHE_SECONDS", float, "a number of seconds >= 0"
        ),
        "auth_hook_fail_open": failure == "open",
    }
