"""LocalStack's KMS for the AWS KMS backend's tests: provisioned, started and stopped by the test session.

The server itself is :mod:`maskinporten_auth_awskms.testing`'s, which the signer benchmark uses too: LocalStack in a
virtual environment of its own, provisioned once collection is done (so that the first run's install counts in no
test's timeout), on 127.0.0.1 and a free port.

Fixture names start with ``kms_`` so they never clash with the other backends' fixtures.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key
from maskinporten_auth_awskms.testing import make_kms_client, provision_localstack, running_localstack

from maskinporten_auth.testing import issue_certificate_chain

HASHES: dict[str, type[hashes.HashAlgorithm]] = {"RS256": hashes.SHA256, "RS384": hashes.SHA384, "RS512": hashes.SHA512}


def _say(config: pytest.Config, message: str) -> None:
    """Print past pytest's output capture, so a first run shows what it is doing."""
    capture = config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        print(f"[kms-localstack] {message}", file=sys.stderr, flush=True)


_PROVISIONED = pytest.StashKey["Path | RuntimeError"]()


def pytest_collection_finish(session: pytest.Session) -> None:
    """Provision LocalStack once collection is done, if a selected test needs it.

    Here, and not in the fixture, so that the first run's install is not counted in a test's timeout.
    """
    if any("kms_endpoint" in getattr(item, "fixturenames", ()) for item in session.items):
        try:
            session.config.stash[_PROVISIONED] = provision_localstack(partial(_say, session.config))
        except RuntimeError as exc:
            session.config.stash[_PROVISIONED] = exc


@pytest.fixture(scope="session")
def kms_endpoint(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a LocalStack KMS running for this test session."""
    python = pytestconfig.stash.get(_PROVISIONED, None) or provision_localstack(partial(_say, pytestconfig))
    if isinstance(python, RuntimeError):
        pytest.fail(f"LocalStack could not be provisioned: {python}", pytrace=False)
    with running_localstack(python, tmp_path_factory.mktemp("localstack"), partial(_say, pytestconfig)) as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def kms_make_client(kms_endpoint: str) -> Callable[..., Any]:
    """Make a boto3 KMS client for LocalStack with fake credentials of its own, never the environment's.

    Keyword arguments go to ``botocore.config.Config``.
    """

    def make(**config: Any) -> Any:
        return make_kms_client(kms_endpoint, **config)

    return make


@pytest.fixture(scope="session")
def kms_client(kms_make_client: Callable[..., Any]) -> Any:
    """A boto3 KMS client talking to LocalStack."""
    return kms_make_client()


@pytest.fixture(scope="session")
def kms_create_key(kms_client: Any) -> Callable[..., str]:
    """Create a KMS key (``kms_create_key("RSA_3072")``, ``usage="ENCRYPT_DECRYPT"``) and return its key id."""

    def create(spec: str = "RSA_2048", usage: str = "SIGN_VERIFY", alias: str | None = None) -> str:
        key_id: str = kms_client.create_key(KeySpec=spec, KeyUsage=usage)["KeyMetadata"]["KeyId"]
        if alias is not None:
            kms_client.create_alias(AliasName=alias, TargetKeyId=key_id)
        return key_id

    return create


@pytest.fixture(scope="session")
def kms_rsa_keys(kms_create_key: Callable[..., str]) -> dict[str, str]:
    """One RSA SIGN_VERIFY key id per key spec, shared by the tests that only sign with them."""
    return {spec: kms_create_key(spec) for spec in ("RSA_2048", "RSA_3072", "RSA_4096")}


@pytest.fixture(scope="session")
def kms_public_key(kms_client: Any) -> Callable[[str], rsa.RSAPublicKey]:
    """Fetch a key's public half straight from GetPublicKey, independently of the code under test."""

    def fetch(key_id: str) -> rsa.RSAPublicKey:
        key = load_der_public_key(kms_client.get_public_key(KeyId=key_id)["PublicKey"])
        assert isinstance(key, rsa.RSAPublicKey)
        return key

    return fetch


@pytest.fixture(scope="session")
def kms_assert_signature() -> Callable[[rsa.RSAPublicKey, bytes, bytes, str], None]:
    """Verify an RS256/384/512 signature locally with ``cryptography`` (never with kms.verify)."""

    def check(public_key: rsa.RSAPublicKey, signature: bytes, message: bytes, algorithm: str) -> None:
        public_key.verify(signature, message, padding.PKCS1v15(), HASHES[algorithm]())

    return check


def _chain(leaf_public_key: rsa.RSAPublicKey, intermediates: int = 0) -> tuple[bytes, list[x509.Certificate]]:
    chain = issue_certificate_chain(leaf_public_key, intermediates=intermediates, subject="313042995 virksomhet")
    return b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in chain), chain


@pytest.fixture(scope="session")
def kms_certificate_chain() -> Callable[..., tuple[bytes, list[x509.Certificate]]]:
    """Certify a public key (a KMS key's) by a local CA through ``intermediates`` CAs.

    Returns the chain as PEM and as certificates, leaf first and the self-signed root last.
    """
    return _chain
