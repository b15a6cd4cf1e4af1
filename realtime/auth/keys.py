"""Which algorithms a verification key may check: pinned by the key's type, never by a
token's ``alg`` header (so a token signed with HMAC over the RSA public key's bytes, or with
``alg: none``, never verifies).
"""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

# RFC 7518 3.2: an HMAC key at least as long as the hash. HS256 needs 32 bytes; a longer
# secret also allows the longer hashes.
MIN_SECRET_BYTES = 32
HMAC_ALGORITHMS = (("HS256", 32), ("HS384", 48), ("HS512", 64))
RSA_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
EC_ALGORITHMS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
# What a JWKS key of each type may verify; symmetric ("oct") keys are never taken from a JWKS.
JWKS_ALGORITHMS = frozenset({*RSA_ALGORITHMS, *EC_ALGORITHMS.values(), "EdDSA"})


def hmac_algorithms(secret: str) -> tuple[str, ...]:
    """The HS algorithms ``secret`` is long enough for; ValueError when it is too short."""
    size = len(secret.encode())
    if size < MIN_SECRET_BYTES:
        raise ValueError(
            f"is {size} bytes; an HMAC secret must be at least {MIN_SECRET_BYTES} random bytes"
            " (for example: python -c 'import secrets; print(secrets.token_urlsafe(48))')"
        )
    return tuple(name for name, minimum in HMAC_ALGORITHMS if size >= minimum)


def public_key_pem(value: str) -> str:
    """``JWT_PUBLIC_KEY``'s PEM text: the value itself, or the file it names."""
    if "-----BEGIN" in value:
        return value.replace("\\n", "\n")
    path = Path(value).expanduser()
    try:
        return path.read_text()
    except OSError as exc:
        reason = exc.strerror
        raise ValueError(f"is neither a PEM public key nor a readable file ({reason})") from None


def public_key_algorithms(pem: str) -> tuple[str, ...]:
    """The algorithms the PEM public key may verify; ValueError for anything else."""
    try:
        key = load_pem_public_key(pem.encode())
    except ValueError:
        raise ValueError("is not a PEM public key (-----BEGIN PUBLIC KEY-----)") from None
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise ValueError(f"is a {key.key_size}-bit RSA key; at least 2048 bits are needed")
        return RSA_ALGORITHMS
    if isinstance(key, ec.EllipticCurvePublicKey):
        algorithm = EC_ALGORITHMS.get(key.curve.name)
        if algorithm is None:
            raise ValueError(f"is an EC key on {key.curve.name}; P-256, P-384 or P-521 needed")
        return (algorithm,)
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return ("EdDSA",)
    raise ValueError(f"is a {type(key).__name__}; an RSA, EC or Ed25519 public key is needed")
