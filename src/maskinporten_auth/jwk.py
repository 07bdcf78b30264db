"""JSON Web Keys for RSA public keys (RFC 7517/7518) and their thumbprints (RFC 7638)."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import rsa

__all__ = ["b64url", "b64url_decode", "jwk_thumbprint", "public_key_from_jwk", "rsa_public_jwk"]


def b64url(data: bytes) -> str:
    """Base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode base64url with or without padding."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _int_to_b64url(value: int) -> str:
    return b64url(value.to_bytes((value.bit_length() + 7) // 8 or 1, "big"))


def rsa_public_jwk(
    key: rsa.RSAPublicKey,
    *,
    kid: str | None = None,
    alg: str | None = None,
    x5c: list[str] | None = None,
) -> dict[str, Any]:
    """Return the public JWK of ``key``, with ``use: sig`` and, when given, ``kid``, ``alg`` and ``x5c``."""
    numbers = key.public_numbers()
    jwk: dict[str, Any] = {"kty": "RSA", "e": _int_to_b64url(numbers.e), "n": _int_to_b64url(numbers.n), "use": "sig"}
    if kid is not None:
        jwk["kid"] = kid
    if alg is not None:
        jwk["alg"] = alg
    if x5c:
        jwk["x5c"] = list(x5c)
    return jwk


def jwk_thumbprint(key: rsa.RSAPublicKey) -> str:
    """Return the RFC 7638 SHA-256 thumbprint of ``key``, base64url encoded (a good default ``kid``)."""
    numbers = key.public_numbers()
    canonical = json.dumps(
        {"e": _int_to_b64url(numbers.e), "kty": "RSA", "n": _int_to_b64url(numbers.n)}, separators=(",", ":")
    )
    return b64url(hashlib.sha256(canonical.encode("ascii")).digest())


def public_key_from_jwk(jwk: dict[str, Any]) -> rsa.RSAPublicKey:
    """Return the RSA public key of a JWK (private members, if any, are ignored)."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    if jwk.get("kty") != "RSA":
        raise ValueError(f"only RSA keys are supported, got kty={jwk.get('kty')!r}")
    n = int.from_bytes(b64url_decode(jwk["n"]), "big")
    e = int.from_bytes(b64url_decode(jwk["e"]), "big")
    return rsa.RSAPublicNumbers(e, n).public_key()
