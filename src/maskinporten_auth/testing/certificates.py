"""Certificate chains for tests of enterprise certificates (x5c): a key certified by a fresh local CA."""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

__all__ = ["issue_certificate_chain"]


def _certificate(
    subject: str, public_key: rsa.RSAPublicKey, issuer: str, issuer_key: rsa.RSAPrivateKey, *, ca: bool
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(issuer_key, hashes.SHA256())
    )


def issue_certificate_chain(
    public_key: rsa.RSAPublicKey, *, intermediates: int = 0, subject: str = "TEST VIRKSOMHET AS"
) -> list[x509.Certificate]:
    """Certify ``public_key`` by a fresh self-signed root CA, through ``intermediates`` CAs.

    Returns the chain leaf first and the root last, as ``x5c`` wants it. The CAs' keys are thrown away.
    """
    root_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    issuer, issuer_key = "Test Root CA", root_key
    chain = [_certificate(issuer, root_key.public_key(), issuer, root_key, ca=True)]
    for level in range(intermediates):
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = f"Test Intermediate CA {level}"
        chain.insert(0, _certificate(name, key.public_key(), issuer, issuer_key, ca=True))
        issuer, issuer_key = name, key
    chain.insert(0, _certificate(subject, public_key, issuer, issuer_key, ca=False))
    return chain
