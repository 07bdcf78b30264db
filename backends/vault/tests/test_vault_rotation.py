"""Key rotation in Vault never changes the key a signer signs with; moving the pin is a deliberate step."""

from __future__ import annotations

import pytest
from cryptography.exceptions import InvalidSignature
from maskinporten_auth_vault import VaultTransitSigner


def test_pinned_version_keeps_signing_with_the_pinned_key_after_rotations(
    vault_root, vault_new_key, vault_public_key, vault_sign_jwt, vault_assert_valid
):
    name = vault_new_key()
    vault_root.secrets.transit.rotate_key(name)
    signer = VaultTransitSigner(name, key_version=1, kid="v1", client=vault_root)
    vault_root.secrets.transit.rotate_key(name)

    token = vault_sign_jwt(signer)

    vault_assert_valid(token, vault_public_key(name, 1), "RS256")
    with pytest.raises(InvalidSignature):
        vault_assert_valid(token, vault_public_key(name, 3), "RS256")
    assert signer.key_version == 1
    assert signer.public_key().public_numbers() == vault_public_key(name, 1).public_numbers()


def test_unpinned_signer_keeps_its_first_resolved_version_after_a_rotation(
    vault_root, vault_new_key, vault_public_key, vault_sign_jwt, vault_assert_valid
):
    name = vault_new_key()
    signer = VaultTransitSigner(name, kid="first", client=vault_root)
    vault_assert_valid(vault_sign_jwt(signer), vault_public_key(name, 1), "RS256")

    vault_root.secrets.transit.rotate_key(name)

    vault_assert_valid(vault_sign_jwt(signer), vault_public_key(name, 1), "RS256")
    assert signer.key_version == 1


def test_moving_the_pin_signs_with_the_new_version(
    vault_root, vault_new_key, vault_public_key, vault_sign_jwt, vault_assert_valid
):
    name = vault_new_key()
    vault_root.secrets.transit.rotate_key(name)
    old = VaultTransitSigner(name, key_version=1, kid="v1", client=vault_root)
    new = VaultTransitSigner(name, key_version=2, kid="v2", client=vault_root)

    assert old.public_jwk()["n"] != new.public_jwk()["n"]
    vault_assert_valid(vault_sign_jwt(new), vault_public_key(name, 2), "RS256")
    vault_assert_valid(vault_sign_jwt(old), vault_public_key(name, 1), "RS256")


def test_a_new_unpinned_signer_takes_the_latest_version(vault_root, vault_new_key):
    name = vault_new_key()
    vault_root.secrets.transit.rotate_key(name)
    vault_root.secrets.transit.rotate_key(name)

    signer = VaultTransitSigner(name, client=vault_root)
    signer.sign(b"x")

    assert signer.key_version == 3
