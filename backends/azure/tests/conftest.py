"""Fixtures for the Azure Key Vault backend's tests: the project's TLS Key Vault (maskinporten_auth_azure.testing).

Fixture names start with ``akv_`` or ``azure_`` because every backend's tests run in one pytest session.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from maskinporten_auth_azure import AzureKeyVaultSigner
from maskinporten_auth_azure import testing as fake_key_vault

#: The bearer token of a caller that may do everything in the fake vault.
AKV_TOKEN = "akv-test-token-" + uuid.uuid4().hex


@pytest.fixture(scope="session")
def akv_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The running fake Key Vault, for the whole session."""
    with fake_key_vault.FakeKeyVault(tmp_path_factory.mktemp("akv")) as server:
        server.add_caller(AKV_TOKEN)
        yield server


@pytest.fixture
def azure_credential() -> Any:
    """A static credential whose token may do everything in the fake vault."""
    return fake_key_vault.StaticTokenCredential(AKV_TOKEN)


@pytest.fixture
def akv_client_kwargs(akv_server: Any) -> dict[str, Any]:
    """What a client needs for the fake vault: its CA, and no challenge-resource check (not *.vault.azure.net)."""
    return {"connection_verify": akv_server.ca_file, "verify_challenge_resource": False}


@pytest.fixture
def akv_rsa_key(akv_server: Any) -> Any:
    """A fresh RSA-HSM key of 2048 bits under a name of its own."""
    return akv_server.create_rsa_key("mp-" + uuid.uuid4().hex[:12], hsm=True)


@pytest.fixture
def akv_make_signer(
    azure_credential: Any, akv_client_kwargs: dict[str, Any]
) -> Iterator[Callable[..., AzureKeyVaultSigner]]:
    """Build signers for the fake vault (kid "akv-kid" unless told), closed at the end of the test."""
    made: list[AzureKeyVaultSigner] = []

    def make(key_id: str, **kwargs: Any) -> AzureKeyVaultSigner:
        options: dict[str, Any] = {"credential": azure_credential, "kid": "akv-kid", **akv_client_kwargs, **kwargs}
        signer = AzureKeyVaultSigner(key_id, **options)
        made.append(signer)
        return signer

    yield make
    for signer in made:
        signer.close()


@pytest.fixture(scope="session")
def akv_enterprise_ca() -> Any:
    """A root and an issuing CA for enterprise certificates (x5c)."""
    return fake_key_vault.EnterpriseCa.create()
