"""Keys and certificates for the core's tests, made fresh for each test session."""

from __future__ import annotations

import datetime
from collections.abc import Callable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from maskinporten_auth import LocalKeySigner

CertificateFactory = Callable[..., x509.Certificate]


@pytest.fixture(scope="session")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def other_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def signer(rsa_key: rsa.RSAPrivateKey) -> LocalKeySigner:
    return LocalKeySigner(rsa_key, kid="test-key-1")


@pytest.fixture(scope="session")
def make_certificate() -> CertificateFactory:
    """Return a function that issues a certificate for a public key, self-signed or by an issuer."""

    def issue(
        subject_key: rsa.RSAPrivateKey,
        common_name: str,
        *,
        issuer: tuple[x509.Certificate, rsa.RSAPrivateKey] | None = None,
        ca: bool = False,
        not_before: datetime.datetime | None = None,
        not_after: datetime.datetime | None = None,
    ) -> x509.Certificate:
        now = datetime.datetime.now(datetime.timezone.utc)
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "REGNSKAP AS"),
                x509.NameAttribute(NameOID.SERIAL_NUMBER, "313042995"),
            ]
        )
        issuer_name, signing_key = (name, subject_key) if issuer is None else (issuer[0].subject, issuer[1])
        return (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(issuer_name)
            .public_key(subject_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or now - datetime.timedelta(days=1))
            .not_valid_after(not_after or now + datetime.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(signing_key, hashes.SHA256())
        )

    return issue


@pytest.fixture(scope="session")
def certificate_chain(
    rsa_key: rsa.RSAPrivateKey, make_certificate: CertificateFactory
) -> tuple[list[x509.Certificate], rsa.RSAPrivateKey]:
    """A virksomhetssertifikat-like chain for ``rsa_key``: [leaf, intermediate, root], and the root's key."""
    root_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    root = make_certificate(root_key, "Test Root CA", ca=True)
    intermediate_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    intermediate = make_certificate(intermediate_key, "Test Issuing CA", issuer=(root, root_key), ca=True)
    leaf = make_certificate(rsa_key, "REGNSKAP AS", issuer=(intermediate, intermediate_key))
    return [leaf, intermediate, root], root_key
