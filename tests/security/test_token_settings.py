"""The token and permission settings: safe defaults, and a bad value stops the start naming
its variable (the CLI's exit 2 is in tests/test_cli.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from realtime.auth.grants import grants_from
from realtime.auth.notices import open_notices
from realtime.errors import ConfigError
from realtime.testing.gateway import make_settings
from tests.security.servers import Keys

SECRET = "s" * 32


def test_defaults_are_safe_with_tokens() -> None:
    settings = make_settings(JWT_SECRET=SECRET)
    assert settings.channel_policy == "token"
    assert settings.jwt_require_exp
    assert settings.jwt_algorithms == ("HS256",)
    assert not settings.auth_hook_fail_open
    assert open_notices(settings) == []
    assert SECRET not in repr(settings)


def test_development_identity_is_open_and_says_so() -> None:
    settings = make_settings()
    assert settings.channel_policy == "open"
    assert [n.split(":")[0] for n in open_notices(settings)] == ["CHANNEL_POLICY=open"]


def test_secret_length_picks_the_hmac_algorithms() -> None:
    assert make_settings(JWT_SECRET="s" * 48).jwt_algorithms == ("HS256", "HS384")
    assert make_settings(JWT_SECRET="s" * 64).jwt_algorithms == ("HS256", "HS384", "HS512")


def pem(key: object) -> str:
    public = key.public_key()  # type: ignore[attr-defined]
    return public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()  # type: ignore[no-any-return]


def test_public_key_pins_its_algorithms(tmp_path: Path) -> None:
    assert make_settings(JWT_PUBLIC_KEY=Keys("rsa", "k").public_pem).jwt_algorithms[0] == "RS256"
    assert make_settings(JWT_PUBLIC_KEY=Keys("ec", "k").public_pem).jwt_algorithms == ("ES256",)
    path = tmp_path / "ed.pem"
    path.write_text(Keys("ed25519", "k").public_pem)
    settings = make_settings(JWT_PUBLIC_KEY=str(path))
    assert settings.jwt_algorithms == ("EdDSA",)
    assert settings.jwt_public_key is not None and "BEGIN PUBLIC KEY" in settings.jwt_public_key


@pytest.mark.parametrize(
    ("env", "variable", "says"),
    [
        ({"JWT_SECRET": "s" * 31}, "JWT_SECRET", "31 bytes"),
        ({"JWT_SECRET": SECRET, "JWT_JWKS_URL": "https://idp/jwks"}, "JWT_JWKS_URL", "only one"),
        ({"JWT_PUBLIC_KEY": "not a key"}, "JWT_PUBLIC_KEY", "neither a PEM"),
        (
            {"JWT_PUBLIC_KEY": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----"},
            "JWT_PUBLIC_KEY",
            "not a PEM public key",
        ),
        ({"JWT_PUBLIC_KEY": "rsa1024"}, "JWT_PUBLIC_KEY", "1024-bit"),
        ({"JWT_PUBLIC_KEY": "p224"}, "JWT_PUBLIC_KEY", "secp224r1"),
        ({"JWT_PUBLIC_KEY": "private"}, "JWT_PUBLIC_KEY", "not a PEM public key"),
        ({"JWT_JWKS_URL": "file:///etc/passwd"}, "JWT_JWKS_URL", "http(s)"),
        ({"JWT_AUDIENCE": "app"}, "JWT_AUDIENCE", "needs JWT_SECRET"),
        ({"JWT_SECRET": SECRET, "JWT_REQUIRE_EXP": "maybe"}, "JWT_REQUIRE_EXP", "1 or 0"),
        ({"CHANNEL_POLICY": "token"}, "CHANNEL_POLICY", "needs JWT_SECRET"),
        ({"CHANNEL_POLICY": "closed"}, "CHANNEL_POLICY", "open | token"),
        ({"AUTH_HOOK_URL": "ftp://x"}, "AUTH_HOOK_URL", "http(s)"),
        (
            {"AUTH_HOOK_URL": "http://x", "AUTH_HOOK_FAILURE": "maybe"},
            "AUTH_HOOK_FAILURE",
            "closed",
        ),
        ({"AUTH_HOOK_TIMEOUT_SECONDS": "0"}, "AUTH_HOOK_TIMEOUT_SECONDS", "> 0"),
    ],
)
def test_bad_settings_name_their_variable(env: dict[str, str], variable: str, says: str) -> None:
    keys = {
        "rsa1024": rsa.generate_private_key(65537, 1024),
        "p224": ec.generate_private_key(ec.SECP224R1()),
    }
    if env.get("JWT_PUBLIC_KEY") in keys:
        env = {"JWT_PUBLIC_KEY": pem(keys[env["JWT_PUBLIC_KEY"]])}
    elif env.get("JWT_PUBLIC_KEY") == "private":
        private = Keys("rsa", "k").private.private_bytes(
            Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()
        )
        env = {"JWT_PUBLIC_KEY": private.decode()}
    with pytest.raises(ConfigError) as info:
        make_settings(**env)
    assert info.value.variable == variable
    assert says in str(info.value)
    if "JWT_SECRET" in env:
        assert env["JWT_SECRET"] not in str(info.value)


def test_token_policy_with_a_hook_needs_no_key() -> None:
    settings = make_settings(CHANNEL_POLICY="token", AUTH_HOOK_URL="http://127.0.0.1:9/auth")
    assert settings.channel_policy == "token" and settings.auth_hook_url is not None


@pytest.mark.parametrize(
    ("pattern", "channel", "allowed"),
    [
        ("room", "room", True),
        ("room", "room2", False),
        ("room:*", "room:", True),
        ("room:*", "room:a:b", True),
        ("*:public", "news:public", True),
        ("a.b", "axb", False),  # regex characters are literal
        ("a+", "aa", False),
        ("user:{sub}", "user:u.1", True),
        ("user:{sub}", "user:uX1", False),  # the id's "." is literal too
        ("*", "line\nbreak", True),
        ("a*b", "a-x-b", True),
        ("a*b", "a-x-bc", False),
        ("a*b*", "a-b-c", True),
        ("{sub}*", "u.1:x", True),
        ("{sub}*", "uX1:x", False),
        ("pre*", "pr", False),
    ],
)
def test_patterns(pattern: str, channel: str, allowed: bool) -> None:
    grants = grants_from({"channels": {pattern: ["subscribe"]}}, "u.1")
    assert grants.allows("subscribe", channel) is allowed
    assert not grants.allows("publish", channel)


def test_star_right_is_every_right() -> None:
    grants = grants_from({"channels": {"c": ["*"]}}, "u")
    assert all(grants.allows(action, "c") for action in ("subscribe", "publish", "presence"))
    assert len(grants_from({}, "u")) == 0
