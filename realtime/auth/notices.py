"""The start-up lines saying what the token and channel settings leave open."""

from __future__ import annotations

from realtime.config import Settings


def open_notices(settings: Settings) -> list[str]:
    """One line per relaxation of the safe defaults, for a warning at start-up."""
    notices = []
    tokens = bool(settings.jwt_secret or settings.jwt_public_key or settings.jwt_jwks_url)
    if tokens and not settings.jwt_require_exp:
        notices.append(
            "JWT_REQUIRE_EXP=0: tokens without exp are accepted and never expire (the seed's "
            "behaviour); issue tokens with exp and remove the setting"
        )
    if settings.channel_policy == "open" and settings.auth_hook_url is None:
        notices.append(
            "CHANNEL_POLICY=open: every connection may subscribe, publish and join presence on "
            "every channel (the seed's behaviour); CHANNEL_POLICY=token allows only what tokens "
            "grant"
        )
    if settings.auth_hook_url is not None and settings.auth_hook_fail_open:
        notices.append(
            "AUTH_HOOK_FAILURE=open: when the authorization hook fails, every action it would "
            "decide is allowed"
        )
    return notices
