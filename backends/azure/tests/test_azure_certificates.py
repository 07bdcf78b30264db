"""Enterprise certificates (x5c): a given chain, or a Key Vault certificate whose key is not exportable."""

from __future__ import annotations

import base64
import uuid

import pytest
from cryptography.hazmat.primitives import serialization
from maskinporten_auth_azure import AzureKeyVaultSigner
from maskinporten_auth_azure import testing as fkv

from maskinporten_auth import ConfigurationError, SigningError


def der_b64(certificate) -> str:
    return base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)).decode()


def test_a_matching_chain_is_sent_as_x5c(akv_server, akv_rsa_key, akv_make_signer, akv_enterprise_ca):
    leaf = akv_enterprise_ca.issue("Virksomhet AS", akv_rsa_key.public_key())
    chain = fkv.pem([leaf, akv_enterprise_ca.intermediate])
    akv_signer = akv_make_signer(akv_server.key_url(akv_rsa_key), kid=None, certificate_chain=chain)

    signature = akv_signer.sign(b"x")

    fkv.verify_signature(leaf.public_key(), "RS256", b"x", signature)
    assert akv_signer.kid is None
    assert akv_signer.x5c == [der_b64(leaf), der_b64(akv_enterprise_ca.intermediate)]
    assert akv_signer.public_jwk()["x5c"] == akv_signer.x5c
    assert "x5c=<2 certificates>" in repr(akv_signer)


@pytest.mark.asyncio
async def test_a_chain_for_another_key_is_refused_before_signing(
    akv_server, akv_rsa_key, akv_make_signer, akv_enterprise_ca
):
    other = akv_server.create_rsa_key("mp-other-" + uuid.uuid4().hex[:8])
    chain = fkv.pem([akv_enterprise_ca.issue("Someone Else AS", other.public_key())])
    signs_before = akv_server.sign_count

    with pytest.raises(ConfigurationError, match="does not match the signing key") as caught:
        await akv_make_signer(akv_server.key_url(akv_rsa_key), kid=None, certificate_chain=chain).asign(b"x")
    with pytest.raises(ConfigurationError, match="does not match the signing key"):
        akv_make_signer(akv_server.key_url(akv_rsa_key), kid=None, certificate_chain=chain).sign(b"x")

    assert caught.value.field == "certificate_chain"
    assert akv_server.sign_count == signs_before


def test_kid_and_chain_together_are_refused(akv_server, akv_rsa_key, akv_enterprise_ca):
    chain = fkv.pem([akv_enterprise_ca.issue("Virksomhet AS", akv_rsa_key.public_key())])

    with pytest.raises(ConfigurationError, match="either kid or certificate_chain"):
        AzureKeyVaultSigner(akv_server.key_url(akv_rsa_key), kid="k", certificate_chain=chain)


def test_from_certificate_reads_the_public_certificate_and_pins_its_key(
    akv_server, azure_credential, akv_client_kwargs, akv_enterprise_ca
):
    name = "virksomhet-" + uuid.uuid4().hex[:8]
    certificate = akv_server.create_certificate(name, issuer=akv_enterprise_ca.issuer)
    akv_server.create_rsa_key(name)  # the key's current version is no longer the certificate's

    akv_signer = AzureKeyVaultSigner.from_certificate(
        akv_server.vault_url,
        name,
        intermediates=fkv.pem([akv_enterprise_ca.intermediate]),
        credential=azure_credential,
        algorithm="RS384",
        **akv_client_kwargs,
    )
    signature = akv_signer.sign(b"x")

    fkv.verify_signature(certificate.certificate.public_key(), "RS384", b"x", signature)
    assert akv_signer.x5c == [der_b64(certificate.certificate), der_b64(akv_enterprise_ca.intermediate)]
    assert akv_signer.key_id == f"{akv_server.vault_url}/keys/{name}/{certificate.key_version}"
    assert not any("/secrets/" in r.path for r in akv_server.requests)  # the key is never asked for
    akv_signer.close()


@pytest.mark.asyncio
async def test_from_certificate_with_a_version_and_no_intermediates(
    akv_server, azure_credential, akv_client_kwargs, akv_enterprise_ca
):
    name = "virksomhet-" + uuid.uuid4().hex[:8]
    first = akv_server.create_certificate(name, issuer=akv_enterprise_ca.issuer)
    akv_server.create_certificate(name, issuer=akv_enterprise_ca.issuer)  # renewed: a new current version

    akv_signer = AzureKeyVaultSigner.from_certificate(
        akv_server.vault_url, name, version=first.version, credential=azure_credential, **akv_client_kwargs
    )

    fkv.verify_signature(first.certificate.public_key(), "RS256", b"x", await akv_signer.asign(b"x"))
    assert akv_signer.x5c == [der_b64(first.certificate)]


def test_certificate_not_found(akv_server, azure_credential, akv_client_kwargs):
    with pytest.raises(SigningError, match="certificate not found") as caught:
        AzureKeyVaultSigner.from_certificate(
            akv_server.vault_url, "no-such-certificate", credential=azure_credential, **akv_client_kwargs
        )

    assert caught.value.key == f"{akv_server.vault_url}/certificates/no-such-certificate"


def test_reading_the_certificate_without_permission(akv_server, akv_client_kwargs, akv_enterprise_ca):
    name = "virksomhet-" + uuid.uuid4().hex[:8]
    akv_server.create_certificate(name, issuer=akv_enterprise_ca.issuer)
    token = "akv-crypto-user-" + uuid.uuid4().hex
    akv_server.add_caller(token, {"keys/get", "keys/sign"})

    with pytest.raises(SigningError, match="access denied") as caught:
        AzureKeyVaultSigner.from_certificate(
            akv_server.vault_url, name, credential=fkv.StaticTokenCredential(token), **akv_client_kwargs
        )

    assert "Key Vault Reader" in caught.value.hint
    assert token not in str(caught.value)


def test_bad_intermediates_fail_with_the_field_name(akv_server, azure_credential, akv_client_kwargs, akv_enterprise_ca):
    name = "virksomhet-" + uuid.uuid4().hex[:8]
    akv_server.create_certificate(name, issuer=akv_enterprise_ca.issuer)

    with pytest.raises(ConfigurationError) as caught:
        AzureKeyVaultSigner.from_certificate(
            akv_server.vault_url, name, intermediates=b"not PEM", credential=azure_credential, **akv_client_kwargs
        )

    assert caught.value.field == "intermediates"
