"""A real PKCS#11 token for the PKCS#11 backend's tests: SoftHSM2 (maskinporten_auth_pkcs11.testing).

The session fixture installs the Debian package when it is missing and the tests run as root (CI does, on a fresh
machine); otherwise every test here skips with a message naming the package.

Fixture names start with ``softhsm_`` because every backend's tests run in one pytest session.
"""

from __future__ import annotations

import os
import secrets
import shutil
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from maskinporten_auth_pkcs11 import Pkcs11Signer
from maskinporten_auth_pkcs11.testing import (
    PACKAGE,
    SoftHsm,
    TokenKey,
    admin_session,
    find_module,
    new_key,
    softhsm_tokens,
)
from pkcs11 import Attribute, CertificateType, ObjectClass

from maskinporten_auth.testing import issue_certificate_chain

#: The tokens of the session, by role. "main" holds the shared keys; nobody ever logs in to "nologin" with the
#: right PIN (SoftHSM2 does not check a second login's PIN); "removable" has its directory deleted by a test.
TOKENS = ("main", "nologin", "removable")
_HASHES = {"RS256": hashes.SHA256, "RS384": hashes.SHA384, "RS512": hashes.SHA512}


def _say(config: pytest.Config, message: str) -> None:
    """Write a line to the terminal now, past pytest's output capture."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None:
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line(message)


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Iterator[SoftHsm]:
    """SoftHSM2 with the session's tokens in a temporary directory; SOFTHSM2_CONF points at it."""
    installing = shutil.which("softhsm2-util") is None and shutil.which("apt-get") is not None and os.geteuid() == 0
    if installing:
        _say(pytestconfig, f"\nPKCS#11 tests: installing the Debian package {PACKAGE!r} with apt-get (up to 4 minutes)")
    module, why = find_module()
    if installing:
        outcome = "installed" if module is not None else f"not installed: {why}"
        _say(pytestconfig, f"PKCS#11 tests: {PACKAGE!r} {outcome}")
    if module is None:
        pytest.skip(f"PKCS#11 tests need SoftHSM2 (Debian package {PACKAGE!r}): {why}")
    with softhsm_tokens(module, tmp_path_factory.mktemp("softhsm"), TOKENS) as tokens:
        yield tokens


@pytest.fixture(scope="session")
def softhsm_new_key(softhsm: SoftHsm) -> Callable[..., TokenKey]:
    """Generate an RSA key pair on a token through PKCS#11: ``softhsm_new_key("main", extractable=False)``."""

    def generate(role: str = "main", **options: Any) -> TokenKey:
        return new_key(softhsm, role, **options)

    return generate


@pytest.fixture(scope="session")
def softhsm_key(softhsm_new_key: Callable[..., TokenKey]) -> TokenKey:
    """The session's shared non-extractable 2048-bit key on the main token."""
    return softhsm_new_key("main")


@pytest.fixture(scope="session")
def softhsm_store_certificates(softhsm: SoftHsm) -> Callable[..., None]:
    """Store certificates on a token as CKO_CERTIFICATE objects: ``store(key, leaf, ca)`` (leaf with the key's id)."""

    def store(key: TokenKey, leaf: x509.Certificate, *others: x509.Certificate) -> None:
        with admin_session(softhsm, key.role) as session:
            for certificate, key_id, label in [(leaf, key.id, key.label)] + [
                (cert, secrets.token_bytes(4), f"ca-{uuid.uuid4().hex[:6]}") for cert in others
            ]:
                session.create_object({
                    Attribute.CLASS: ObjectClass.CERTIFICATE,
                    Attribute.CERTIFICATE_TYPE: CertificateType.X_509,
                    Attribute.TOKEN: True,
                    Attribute.LABEL: label,
                    Attribute.ID: key_id,
                    Attribute.SUBJECT: certificate.subject.public_bytes(),
                    Attribute.VALUE: certificate.public_bytes(serialization.Encoding.DER),
                })  # fmt: skip

    return store


@pytest.fixture(scope="session")
def softhsm_issue_chain() -> Callable[[rsa.RSAPublicKey], tuple[x509.Certificate, x509.Certificate]]:
    """Issue a leaf certificate for a public key from a fresh CA: (leaf, CA certificate)."""

    def issue(public_key: rsa.RSAPublicKey) -> tuple[x509.Certificate, x509.Certificate]:
        leaf, root = issue_certificate_chain(public_key)
        return leaf, root

    return issue


@pytest.fixture
def softhsm_signer(softhsm: SoftHsm) -> Callable[..., Pkcs11Signer]:
    """Make a Pkcs11Signer for a token key with the right PIN: ``softhsm_signer(key, kid="k", algorithm=...)``."""

    def make(key: TokenKey, **options: Any) -> Pkcs11Signer:
        options.setdefault("pin", softhsm.pin)
        options.setdefault("kid", "pkcs11-test")
        return Pkcs11Signer(softhsm.module, token_label=softhsm.labels[key.role], key_label=key.label, **options)

    return make


def _verify(public_key: rsa.RSAPublicKey, algorithm: str, data: bytes, signature: bytes) -> None:
    public_key.verify(signature, data, padding.PKCS1v15(), _HASHES[algorithm]())


@pytest.fixture(scope="session")
def softhsm_verify() -> Callable[[rsa.RSAPublicKey, str, bytes, bytes], None]:
    """Verify an RSASSA-PKCS1-v1_5 signature with cryptography (never with the token): (key, alg, data, sig)."""
    return _verify


@pytest.fixture(scope="session")
def softhsm_remove_token(softhsm: SoftHsm) -> Callable[[str], None]:
    """Take a token away for good, as pulling a smart card does: delete its directory."""
    return lambda role: shutil.rmtree(softhsm.token_directory(role))
