"""The vault-transit:// key URI, through the core's entry-point lookup."""

from __future__ import annotations

import pytest
from maskinporten_auth_vault import VaultTransitSigner

import maskinporten_auth
from maskinporten_auth.errors import ConfigurationError


def test_core_resolves_the_uri_through_the_entry_point(vault_env, vault_rsa_keys, vault_public_key, vault_sign_jwt,
                                                       vault_assert_valid):  # fmt: skip
    name = vault_rsa_keys["rsa-2048"]

    signer = maskinporten_auth.signer_from_uri(f"vault-transit://transit/{name}?version=1", kid="uri")

    assert isinstance(signer, VaultTransitSigner)
    assert (signer.mount_point, signer.key_name, signer.key_version, signer.kid) == ("transit", name, 1, "uri")
    vault_assert_valid(vault_sign_jwt(signer), vault_public_key(name), "RS256")


def test_the_documented_example_uri():
    signer = maskinporten_auth.signer_from_uri("vault-transit://transit/key?version=1", algorithm="RS512")

    assert (signer.mount_point, signer.key_name, signer.key_version, signer.algorithm) == (
        "transit", "key", 1, "RS512"
    )  # fmt: skip


@pytest.mark.parametrize(
    ("uri", "mount", "key", "version"),
    [
        ("vault-transit://transit/maskinporten", "transit", "maskinporten", None),
        ("vault-transit://transit/maskinporten?version=12", "transit", "maskinporten", 12),
        ("vault-transit://teams/a/transit/mp-key", "teams/a/transit", "mp-key", None),
    ],
)
def test_parses_mount_key_and_version(uri, mount, key, version):
    signer = maskinporten_auth.signer_from_uri(uri)

    assert (signer.mount_point, signer.key_name, signer.key_version) == (mount, key, version)


@pytest.mark.parametrize(
    "uri",
    [
        "vault-transit://transit",
        "vault-transit://transit/",
        "vault-transit:///key",
        "vault-transit://transit//key",
        "vault-transit://user@transit/key",
        "vault-transit://transit:8200/key",
        "vault-transit://transit/key#v1",
        "vault-transit://transit/key?version=0",
        "vault-transit://transit/key?version=latest",
        "vault-transit://transit/key?version=1&version=2",
        "vault-transit://transit/key?namespace=a",
        "vault-transit://transit/key?version",
    ],
)
def test_bad_uris_are_configuration_errors(uri):
    with pytest.raises(ConfigurationError) as caught:
        maskinporten_auth.signer_from_uri(uri)
    assert caught.value.field in ("key", "key_name", "mount_point")


def test_passes_the_client_on(vault_root, vault_rsa_keys, monkeypatch):
    monkeypatch.setenv("VAULT_ADDR", "http://127.0.0.1:9")
    monkeypatch.delenv("VAULT_TOKEN", raising=False)
    uri = f"vault-transit://transit/{vault_rsa_keys['rsa-2048']}"

    signer = maskinporten_auth.signer_from_uri(uri, client=vault_root)

    assert len(signer.sign(b"x")) == 256
