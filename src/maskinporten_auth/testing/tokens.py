"""The access tokens the emulator issues (maskinporten-protocol.md §3) and the key that signs them."""

from __future__ import annotations

import base64
import datetime
import secrets
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from ..jwk import jwk_thumbprint, rsa_public_jwk
from ..jws import sign_rs256
from .validation import AcceptedGrant

__all__ = ["AccessTokenSigner", "access_token_claims"]


def _party(orgno: str) -> dict[str, str]:
    return {"authority": "iso6523-actorid-upis", "ID": f"0192:{orgno}"}


def _self_signed_certificate(key: rsa.RSAPrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Maskinporten emulator token signing")])
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .sign(key, hashes.SHA256())
    )


class AccessTokenSigner:
    """An RSA key that signs access tokens (RS256), published as a JWKS with ``kid``, ``alg``, ``use``, ``x5c``.

    Without ``key`` a fresh 2048-bit key is generated.
    """

    def __init__(self, key: rsa.RSAPrivateKey | None = None) -> None:
        self._key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public_key = self._key.public_key()
        self.kid = jwk_thumbprint(public_key)
        certificate = _self_signed_certificate(self._key)
        x5c = [base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)).decode("ascii")]
        self.jwks: dict[str, Any] = {"keys": [rsa_public_jwk(public_key, kid=self.kid, alg="RS256", x5c=x5c)]}

    def sign(self, claims: dict[str, Any]) -> str:
        """Return ``claims`` as a signed JWT with this key's ``kid`` in the header."""
        return sign_rs256(self._key, {"typ": "JWT", "kid": self.kid}, claims)


def access_token_claims(
    grant: AcceptedGrant,
    *,
    issuer: str,
    now: float,
    lifetime: int,
    delegation_source: str,
    authorization_details: list[Any] | None = None,
) -> dict[str, Any]:
    """The claims of the access token for ``grant``, issued at ``now`` for ``lifetime`` seconds.

    ``authorization_details`` is what the token says of the grant's (system users completed with their ids).
    """
    issued_at = int(now)
    claims: dict[str, Any] = {
        "iss": issuer,
        "client_id": grant.client.client_id,
        "client_amr": grant.client_amr,
        "consumer": _party(grant.consumer_org),
        "scope": " ".join(grant.scopes),
        "token_type": "Bearer",
        "exp": issued_at + lifetime,
        "iat": issued_at,
        "jti": secrets.token_urlsafe(24),
    }
    if grant.supplier_org is not None:
        claims["supplier"] = _party(grant.supplier_org)
        claims["delegation_source"] = delegation_source
    resource = grant.claims.get("resource")
    if resource:
        claims["aud"] = resource[0] if isinstance(resource, list) and len(resource) == 1 else resource
    if "pid" in grant.claims:
        claims["pid"] = grant.claims["pid"]
    if authorization_details is not None:
        claims["authorization_details"] = authorization_details
    return claims
