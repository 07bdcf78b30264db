"""The grant header's ``x5c``: decoding (MP-123), chain trust (MP-120) and certificate validity (MP-121)."""

from __future__ import annotations

import base64
import binascii
import datetime
from collections.abc import Mapping
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import rsa

from .registry import certificate_fingerprint
from .rejection import Rejection

__all__ = ["check_validity", "decode_x5c", "leaf_public_key", "trusted_anchors"]


def _invalid_x5c(detail: str) -> Rejection:
    return Rejection.invalid_grant(f"Invalid JWT header x5c: {detail}", "MP-123")


def _untrusted(detail: str) -> Rejection:
    return Rejection.authentication_failed(f"The JWT is signed with an invalid certificate. {detail}", "MP-120")


def decode_x5c(value: Any) -> list[x509.Certificate]:
    """Decode ``x5c``: a non-empty JSON array of standard-base64 DER certificates, leaf first."""
    if not isinstance(value, list):
        raise _invalid_x5c(f"must be a JSON array of certificates, got a {type(value).__name__}")
    if not value:
        raise _invalid_x5c("the certificate array is empty")
    certificates = []
    for index, entry in enumerate(value):
        if not isinstance(entry, str):
            raise _invalid_x5c(f"entry {index} is not a string")
        try:
            der = base64.b64decode(entry, validate=True)
            certificates.append(x509.load_der_x509_certificate(der))
        except (binascii.Error, ValueError):
            raise _invalid_x5c(f"entry {index} is not a base64-encoded DER certificate") from None
    return certificates


def _issued_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def trusted_anchors(chain: list[x509.Certificate], trust_store: Mapping[bytes, x509.Certificate]) -> set[bytes]:
    """Return the fingerprints of the trusted certificates ``chain`` leads to; raise MP-120 when it leads to none.

    Each certificate must be issued by the next one in the chain. A chain is anchored where one of its
    certificates is trusted itself or was issued by a trusted certificate.
    """
    anchors: set[bytes] = set()
    for position, certificate in enumerate(chain):
        fingerprint = certificate_fingerprint(certificate)
        if fingerprint in trust_store:
            anchors.add(fingerprint)
        anchors.update(fp for fp, trusted in trust_store.items() if _issued_by(certificate, trusted))
        following = chain[position + 1 : position + 2]
        if following and not _issued_by(certificate, following[0]):
            raise _untrusted(f"Certificate {position} in x5c is not issued by certificate {position + 1}.")
    if not anchors:
        raise _untrusted("The certificate chain does not lead to a trusted certificate.")
    return anchors


def check_validity(chain: list[x509.Certificate], now: float) -> None:
    """Raise MP-121 if a certificate in ``chain`` has expired, MP-120 if one is not valid yet, at time ``now``."""
    moment = datetime.datetime.fromtimestamp(now, datetime.timezone.utc)
    for certificate in chain:
        if certificate.not_valid_after_utc < moment:
            raise Rejection.authentication_failed(
                f"Expired key. The certificate {certificate.subject.rfc4514_string()!r} expired "
                f"{certificate.not_valid_after_utc:%Y-%m-%dT%H:%M:%SZ}.",
                "MP-121",
            )
        if certificate.not_valid_before_utc > moment:
            raise _untrusted(f"The certificate {certificate.subject.rfc4514_string()!r} is not valid yet.")


def leaf_public_key(chain: list[x509.Certificate]) -> rsa.RSAPublicKey:
    """The leaf certificate's RSA public key (MP-120 for any other key type)."""
    key = chain[0].public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise _untrusted("The certificate does not hold an RSA key.")
    return key
