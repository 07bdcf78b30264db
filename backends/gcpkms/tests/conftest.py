"""Fixtures for the Cloud KMS backend's tests: the project's Cloud KMS server (maskinporten_auth_gcpkms.testing).

Fixture names start with ``gcp_`` because every backend's tests run in one pytest session.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from maskinporten_auth_gcpkms import GcpKmsSigner
from maskinporten_auth_gcpkms import testing as fake_kms


@pytest.fixture(scope="session")
def gcp_kms() -> Iterator[fake_kms.FakeCloudKms]:
    """The running fake Cloud KMS, for the whole session."""
    with fake_kms.FakeCloudKms() as server:
        yield server


@pytest.fixture(scope="session")
def gcp_shared_key(gcp_kms: fake_kms.FakeCloudKms) -> Callable[[str], fake_kms.FakeKeyVersion]:
    """One key version per algorithm for the session (4096-bit keys are slow to make); tests must not change them."""
    made: dict[str, fake_kms.FakeKeyVersion] = {}

    def get(algorithm: str) -> fake_kms.FakeKeyVersion:
        if algorithm not in made:
            made[algorithm] = gcp_kms.create_key_version("shared", algorithm.lower().replace("_", "-"), algorithm)
        return made[algorithm]

    return get


@pytest.fixture
def gcp_client_options(gcp_kms: fake_kms.FakeCloudKms) -> dict[str, Any]:
    """What the signer's own client needs for the fake: anonymous credentials and its http endpoint."""
    from google.auth.credentials import AnonymousCredentials

    return {"credentials": AnonymousCredentials(), "client_options": {"api_endpoint": gcp_kms.endpoint}}


@pytest.fixture
def gcp_key(gcp_kms: fake_kms.FakeCloudKms) -> Callable[..., fake_kms.FakeKeyVersion]:
    """Create a key version of a new key (``algorithm`` as Cloud KMS names it, PKCS#1 2048 SHA-256 by default)."""

    def create(algorithm: str = "RSA_SIGN_PKCS1_2048_SHA256") -> fake_kms.FakeKeyVersion:
        return gcp_kms.create_key_version("maskinporten", "grant-" + uuid.uuid4().hex[:12], algorithm)

    return create


@pytest.fixture
def gcp_make_signer(gcp_client_options: dict[str, Any]) -> Iterator[Callable[..., GcpKmsSigner]]:
    """Build signers with a client of their own for the fake, closed at the end of the test."""
    made: list[GcpKmsSigner] = []

    def make(version: fake_kms.FakeKeyVersion | str, **kwargs: Any) -> GcpKmsSigner:
        name = version if isinstance(version, str) else version.name
        options = {**gcp_client_options, **kwargs} if "client" not in kwargs else kwargs
        signer = GcpKmsSigner(name, **options)
        made.append(signer)
        return signer

    yield make
    for signer in made:
        signer.close()
