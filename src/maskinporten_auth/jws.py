"""Compact JWS (RFC 7515) parsing, RSA PKCS#1 v1.5 verification and RS256 signing, strictly and without JOSE libs."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from .jwk import b64url, b64url_decode

__all__ = ["RSA_ALGORITHMS", "CompactJws", "MalformedJws", "sign_rs256"]

RSA_ALGORITHMS: dict[str, type[hashes.HashAlgorithm]] = {
    "RS256": hashes.SHA256,
    "RS384": hashes.SHA384,
    "RS512": hashes.SHA512,
}
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")


class MalformedJws(ValueError):
    """The text is not a compact JWS with JSON-object header and payload."""


def _decode_json_object(segment: str, name: str) -> dict[str, Any]:
    try:
        value = json.loads(b64url_decode(segment))
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedJws(f"the JWT {name} is not base64url-encoded JSON") from exc
    if not isinstance(value, dict):
        raise MalformedJws(f"the JWT {name} is not a JSON object")
    return value


@dataclass(frozen=True)
class CompactJws:
    """A parsed, not yet verified, compact JWS."""

    header: dict[str, Any]
    claims: dict[str, Any]
    signing_input: bytes
    signature: bytes

    @classmethod
    def parse(cls, token: str, *, allow_empty_signature: bool = False) -> CompactJws:
        """Split and decode ``token``; raise :class:`MalformedJws` unless it is three base64url parts of JSON.

        With ``allow_empty_signature`` an empty third part parses (to an empty :attr:`signature`), so that a
        verifier can call it an invalid signature rather than a malformed JWS.
        """
        parts = token.split(".")
        if len(parts) != 3:
            raise MalformedJws(f"a compact JWS has 3 dot-separated parts, got {len(parts)}")
        required = parts[:2] if allow_empty_signature else parts
        if not all(part and _BASE64URL.fullmatch(part) for part in required) or not _BASE64URL.fullmatch(parts[2]):
            raise MalformedJws("a JWS part is empty or not base64url")
        header_part, claims_part, signature_part = parts
        return cls(
            header=_decode_json_object(header_part, "header"),
            claims=_decode_json_object(claims_part, "payload"),
            signing_input=f"{header_part}.{claims_part}".encode("ascii"),
            signature=b64url_decode(signature_part),
        )

    def signature_is_valid(self, key: rsa.RSAPublicKey, algorithm: str) -> bool:
        """Whether the signature verifies with ``key`` under ``algorithm`` (one of :data:`RSA_ALGORITHMS`)."""
        try:
            key.verify(self.signature, self.signing_input, padding.PKCS1v15(), RSA_ALGORITHMS[algorithm]())
        except InvalidSignature:
            return False
        return True


def _json_segment(value: dict[str, Any]) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode("utf-8"))


def sign_rs256(key: rsa.RSAPrivateKey, header: dict[str, Any], claims: dict[str, Any]) -> str:
    """Return the compact JWS of ``claims`` signed with ``key`` (``alg: RS256`` is set in the header)."""
    signing_input = f"{_json_segment({**header, 'alg': 'RS256'})}.{_json_segment(claims)}"
    signature = key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64url(signature)}"
