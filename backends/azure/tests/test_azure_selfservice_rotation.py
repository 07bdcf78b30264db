"""Rotating a client to a new Key Vault key version through the self-service API, with crashes (the fake vault)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from maskinporten_auth.testing.rotation import ROTATION_STEPS, rotate_backend_key


@pytest.mark.parametrize("crash_after", ROTATION_STEPS)
def test_a_new_key_version_is_registered_verified_and_switched_to_after_a_crash(
    maskinporten_emulator, akv_server, akv_rsa_key, akv_make_signer, crash_after
):
    old = akv_make_signer(akv_server.key_url(akv_rsa_key), kid="akv-old")
    rotated = akv_server.create_rsa_key(akv_rsa_key.name, hsm=True)
    new = akv_make_signer(akv_server.key_url(rotated), kid="akv-new")

    registered = rotate_backend_key(maskinporten_emulator, old, new, crash_after)

    assert registered.public_numbers() == rotated.public_key().public_numbers()
    registered.verify(new.sign(b"probe"), b"probe", padding.PKCS1v15(), hashes.SHA256())
