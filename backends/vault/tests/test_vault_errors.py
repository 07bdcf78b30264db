"""Misconfigured keys, missing permissions and unreachable servers: typed errors with hints, and no secrets."""

from __future__ import annotations

import pytest
from maskinporten_auth_vault import VaultTransitSigner, policy

from maskinporten_auth.errors import ConfigurationError, SigningError


def first_use_error(signer: VaultTransitSigner) -> SigningError:
    with pytest.raises(SigningError) as caught:
        signer.sign(b"header.claims")
    assert caught.value.backend == "vault-transit"
    return caught.value


def test_missing_key(vault_root):
    error = first_use_error(VaultTransitSigner("no-such-key", client=vault_root))

    assert error.key == "transit/no-such-key"
    assert "no such Transit key" in str(error)
    assert "vault write transit/keys/no-such-key type=rsa-3072" in error.hint


def test_missing_mount(vault_root):
    error = first_use_error(VaultTransitSigner("key", mount_point="not-mounted", client=vault_root))

    assert error.key == "not-mounted/key"
    assert "no handler for route" in str(error)
    assert "mount_point" in error.hint


def test_aes_key_is_not_rsa(vault_root, vault_new_key):
    name = vault_new_key("aes256-gcm96")

    error = first_use_error(VaultTransitSigner(name, client=vault_root))

    assert "'aes256-gcm96'" in str(error)
    assert "RSA" in str(error)
    assert "rsa-2048, rsa-3072 or rsa-4096" in error.hint


def test_ecdsa_key_signs_but_is_not_rsa(vault_root, vault_new_key):
    name = vault_new_key("ecdsa-p256")

    error = first_use_error(VaultTransitSigner(name, client=vault_root))

    assert "'ecdsa-p256'" in str(error)


def test_public_jwk_of_an_unusable_key_is_the_same_error(vault_root, vault_new_key):
    signer = VaultTransitSigner(vault_new_key("aes256-gcm96"), client=vault_root)

    with pytest.raises(SigningError, match="aes256-gcm96"):
        signer.public_jwk()


def test_version_higher_than_the_latest(vault_root, vault_rsa_keys):
    error = first_use_error(VaultTransitSigner(vault_rsa_keys["rsa-2048"], key_version=7, client=vault_root))

    assert "has no version 7; the latest version is 1" in str(error)
    assert "key_version" in error.hint


def test_version_below_min_encryption_version(vault_root, vault_new_key):
    name = vault_new_key()
    vault_root.secrets.transit.rotate_key(name)
    vault_root.secrets.transit.update_key_configuration(name, min_encryption_version=2)

    error = first_use_error(VaultTransitSigner(name, key_version=1, client=vault_root))

    assert "min_encryption_version is 2" in str(error)


def test_version_no_longer_held_by_vault(vault_root, vault_new_key):
    name = vault_new_key()
    vault_root.secrets.transit.rotate_key(name)
    vault_root.secrets.transit.update_key_configuration(name, min_decryption_version=2)

    error = first_use_error(VaultTransitSigner(name, key_version=1, client=vault_root))

    assert "version 1 is no longer in Vault" in str(error)


def test_least_privilege_policy_is_enough(bao_server, vault_new_key, vault_least_privilege_token, vault_sign_jwt,
                                          vault_public_key, vault_assert_valid):  # fmt: skip
    name = vault_new_key()
    client = bao_server.client(vault_least_privilege_token(name))
    signer = VaultTransitSigner(name, kid="least", client=client)

    vault_assert_valid(vault_sign_jwt(signer), vault_public_key(name), "RS256")
    assert signer.public_jwk()["kid"] == "least"


def test_token_without_the_policy_gets_a_typed_403_naming_the_paths(bao_server, vault_new_key,
                                                                   vault_token_with_policy):  # fmt: skip
    name = vault_new_key()
    token = vault_token_with_policy('path "sys/nothing" { capabilities = ["read"] }')

    error = first_use_error(VaultTransitSigner(name, client=bao_server.client(token)))

    assert "Vault denied reading the key (permission denied)" in str(error)
    assert f'path "transit/sign/{name}" {{ capabilities = ["update"] }}' in error.hint
    assert f'path "transit/keys/{name}" {{ capabilities = ["read"] }}' in error.hint
    assert token not in str(error)


def test_token_that_may_read_but_not_sign(bao_server, vault_new_key, vault_token_with_policy):
    name = vault_new_key()
    token = vault_token_with_policy(f'path "transit/keys/{name}" {{ capabilities = ["read"] }}')

    error = first_use_error(VaultTransitSigner(name, client=bao_server.client(token)))

    assert "Vault denied signing with version 1" in str(error)
    assert policy("transit", name) in error.hint


def test_policy_for_a_nested_mount_names_the_mount():
    assert policy("teams/a/transit", "mp") == (
        'path "teams/a/transit/sign/mp" { capabilities = ["update"] }\n'
        'path "teams/a/transit/keys/mp" { capabilities = ["read"] }\n'
    )


def test_invalid_token_is_a_403_without_the_token_in_the_message(bao_server, vault_rsa_keys):
    token = "hvs.not-a-real-token-0123456789"

    error = first_use_error(VaultTransitSigner(vault_rsa_keys["rsa-2048"], client=bao_server.client(token)))

    assert "permission denied" in str(error)
    assert token not in str(error) + repr(error) + (error.hint or "")


def test_unreachable_vault_is_a_signing_error(monkeypatch):
    monkeypatch.setenv("VAULT_ADDR", "http://user:secret@127.0.0.1:9")
    monkeypatch.setenv("VAULT_TOKEN", "hvs.secret-token")

    error = first_use_error(VaultTransitSigner("mp"))

    assert "cannot reach Vault at http://127.0.0.1:9 when reading the key (ConnectionError)" in str(error)
    assert "VAULT_ADDR" in error.hint
    assert "secret" not in str(error)


def test_sealed_vault(bao_own_server, vault_new_key):
    client = bao_own_server.client()
    name = vault_new_key(client=client)
    signer = VaultTransitSigner(name, client=client)
    signer.sign(b"before")
    client.sys.seal()

    error = first_use_error(signer)

    assert "Vault is sealed or unavailable" in str(error)
    assert "unseal" in error.hint


def test_key_deleted_after_first_use(vault_root, vault_new_key):
    name = vault_new_key()
    signer = VaultTransitSigner(name, client=vault_root)
    signer.sign(b"first")
    vault_root.secrets.transit.update_key_configuration(name, deletion_allowed=True)
    vault_root.secrets.transit.delete_key(name)

    error = first_use_error(signer)

    assert "signing key not found" in str(error)


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"key_name": ""}, "key_name"),
        ({"key_name": "a/b"}, "key_name"),
        ({"key_name": "k", "mount_point": ""}, "mount_point"),
        ({"key_name": "k", "mount_point": "a/../b"}, "mount_point"),
        ({"key_name": "k", "key_version": 0}, "key_version"),
        ({"key_name": "k", "key_version": "1"}, "key_version"),
        ({"key_name": "k", "key_version": True}, "key_version"),
        ({"key_name": "k", "algorithm": "PS256"}, "algorithm"),
        ({"key_name": "k", "algorithm": "ES256"}, "algorithm"),
    ],
)
def test_bad_configuration_fails_at_construction(arguments, field):
    with pytest.raises(ConfigurationError) as caught:
        VaultTransitSigner(**arguments)
    assert caught.value.field == field


def test_mount_point_slashes_are_trimmed():
    assert VaultTransitSigner("k", mount_point="/teams/a/transit/").mount_point == "teams/a/transit"
