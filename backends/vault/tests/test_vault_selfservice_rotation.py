"""Rotating a client from one Vault Transit key version to the next through the self-service API, with crashes."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from maskinporten_auth_vault import VaultTransitSigner

from maskinporten_auth.testing.rotation import ROTATION_STEPS, rotate_backend_key


@pytest.mark.parametrize("crash_after", ROTATION_STEPS)
def test_a_new_key_version_is_registered_verified_and_switched_to_after_a_crash(
    maskinporten_emulator, vault_root, vault_new_key, vault_public_key, crash_after
):
    name = vault_new_key()
    vault_root.secrets.transit.rotate_key(name)
    old = VaultTransitSigner(name, key_version=1, kid="v1", client=vault_root)
    new = VaultTransitSigner(name, key_version=2, kid="v2", client=vault_root)

    registered = rotate_backend_key(maskinporten_emulator, old, new, crash_after)

    assert registered.public_numbers() == vault_public_key(name, 2).public_numbers()
    signature = new.sign(b"probe")
    registered.verify(signature, b"probe", padding.PKCS1v15(), hashes.SHA256())
