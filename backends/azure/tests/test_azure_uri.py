"""``azurekv:`` key URIs, resolved by the core's ``signer_from_uri`` through the entry point."""

from __future__ import annotations

import uuid
from importlib.metadata import entry_points
from urllib.parse import urlsplit

import pytest
from maskinporten_auth_azure import AzureKeyVaultSigner
from maskinporten_auth_azure import testing as fkv

import maskinporten_auth
from maskinporten_auth import ConfigurationError


def azurekv(server, path: str) -> str:
    return f"azurekv://{urlsplit(server.vault_url).netloc}{path}"


def test_the_entry_point_is_registered():
    (entry_point,) = [ep for ep in entry_points(group="maskinporten_auth.signers") if ep.name == "azurekv"]

    assert entry_point.value == "maskinporten_auth_azure.uri:signer_from_uri"


@pytest.mark.parametrize("versioned", [False, True])
def test_a_key_uri_gives_a_working_signer(akv_server, akv_rsa_key, azure_credential, akv_client_kwargs, versioned):
    path = f"/keys/{akv_rsa_key.name}" + (f"/{akv_rsa_key.version}" if versioned else "")

    signer = maskinporten_auth.signer_from_uri(
        azurekv(akv_server, path), kid="uri-kid", algorithm="RS512", credential=azure_credential, **akv_client_kwargs
    )

    assert isinstance(signer, AzureKeyVaultSigner)
    assert (signer.kid, signer.algorithm) == ("uri-kid", "RS512")
    fkv.verify_signature(akv_rsa_key.public_key(), "RS512", b"x", signer.sign(b"x"))
    assert signer.key_id == akv_server.key_url(akv_rsa_key)


def test_a_certificate_uri_signs_with_the_certificates_key(
    akv_server, azure_credential, akv_client_kwargs, akv_enterprise_ca
):
    name = "virksomhet-" + uuid.uuid4().hex[:8]
    certificate = akv_server.create_certificate(name, issuer=akv_enterprise_ca.issuer)

    signer = maskinporten_auth.signer_from_uri(
        azurekv(akv_server, f"/certificates/{name}"),
        intermediates=fkv.pem([akv_enterprise_ca.intermediate]),
        credential=azure_credential,
        **akv_client_kwargs,
    )

    assert signer.x5c is not None and len(signer.x5c) == 2
    fkv.verify_signature(certificate.certificate.public_key(), "RS256", b"x", signer.sign(b"x"))


def test_kid_does_not_apply_to_a_certificate_uri():
    with pytest.raises(ConfigurationError) as caught:
        maskinporten_auth.signer_from_uri("azurekv://myvault.vault.azure.net/certificates/virksomhet", kid="k")

    assert caught.value.field == "kid"


@pytest.mark.parametrize(
    "uri",
    [
        "azurekv:///keys/mp",
        "azurekv://myvault.vault.azure.net/secrets/mp",
        "azurekv://myvault.vault.azure.net/keys",
        "azurekv://myvault.vault.azure.net/keys/mp/v1/sign",
        "azurekv://myvault.vault.azure.net/keys/mp?version=1",
        "azurekv://user:secret-pw@myvault.vault.azure.net/keys/mp",
        "azurekv://myvault.vault.azure.net/keys/under_score",
    ],
)
def test_bad_uris_fail_with_the_key_field(uri):
    with pytest.raises(ConfigurationError) as caught:
        maskinporten_auth.signer_from_uri(uri)

    assert caught.value.field == "key"
    assert "secret-pw" not in str(caught.value)
