"""The grant header's ``x5c``: decoding (MP-123), chain trust (MP-120), validity (MP-121), organisation (MP-122)."""

from __future__ import annotations

import base64
import binascii
import datetime
import itertools
from collections.abc import Iterable
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.verification import Criticality, ExtensionPolicy, PolicyBuilder, Store, VerificationError

from ..certificates import issued_by, organisation_number
from .rejection import Rejection

__all__ = [
    "check_chain_order",
    "check_organisation",
    "check_trusted",
    "check_validity",
    "decode_x5c",
    "leads_to",
    "leaf_public_key",
]


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


def check_chain_order(chain: list[x509.Certificate]) -> None:
    """RFC 7515 §4.1.6: each certificate in ``x5c`` must certify the one before it; MP-120 otherwise."""
    for position, (certificate, issuer) in enumerate(itertools.pairwise(chain)):
        if not issued_by(certificate, issuer):
            raise _untrusted(f"Certificate {position} in x5c is not issued by certificate {position + 1}.")


def leads_to(chain: list[x509.Certificate], trusted: Iterable[x509.Certificate], now: float) -> bool:
    """Whether ``chain`` (leaf first) has a valid certification path, at time ``now``, to a ``trusted`` certificate.

    Full RFC 5280 path validation by ``cryptography.x509.verification``: signatures, validity periods, CA basic
    constraints and path lengths. A trusted certificate is an anchor whether it is a CA or the leaf itself. The
    extension rules are relaxed from the Web PKI's (no SAN, key identifiers or extended key usage required of
    the test certificates people make), except that an issuer must be a CA.
    """
    anchors = list(trusted)
    if not anchors:
        return False
    ca_policy = ExtensionPolicy.permit_all().require_present(x509.BasicConstraints, Criticality.AGNOSTIC, None)
    verifier = (
        PolicyBuilder()
        .store(Store(anchors))
        .time(datetime.datetime.fromtimestamp(now, datetime.timezone.utc))
        .extension_policies(ca_policy=ca_policy, ee_policy=ExtensionPolicy.permit_all())
        .build_client_verifier()
    )
    try:
        verifier.verify(chain[0], chain[1:])
    except VerificationError:
        return False
    return True


def check_trusted(chain: list[x509.Certificate], trust_store: Iterable[x509.Certificate], now: float) -> None:
    """Raise MP-120 unless ``chain`` leads to a certificate in ``trust_store`` (see :func:`leads_to`)."""
    if not leads_to(chain, trust_store, now):
        raise _untrusted("The certificate chain does not lead to a trusted certificate.")


def check_organisation(chain: list[x509.Certificate], orgno: str) -> None:
    """MP-122 ([FS]): the enterprise certificate must be issued to the client's own organisation.

    A certificate with no organisation number in its subject is let through: the emulator accepts the plain
    test certificates people make, where Maskinporten would only see Buypass and Commfides certificates.
    """
    found = organisation_number(chain[0])
    if found is not None and found != orgno:
        raise Rejection.invalid_grant(
            f"Invalid organization number for client. Does not match certificate orgno: the certificate is "
            f"issued to {found}, the client belongs to {orgno}.",
            "MP-122",
        )


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
