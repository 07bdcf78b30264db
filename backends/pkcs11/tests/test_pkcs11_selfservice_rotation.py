"""Rotating a client to a new key generated on the token through the self-service API, with crashes (SoftHSM2)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from maskinporten_auth.testing.rotation import ROTATION_STEPS, rotate_backend_key


@pytest.mark.parametrize("crash_after", ROTATION_STEPS)
def test_a_new_token_key_is_registered_verified_and_switched_to_after_a_crash(
    maskinporten_emulator, softhsm_key, softhsm_new_key, softhsm_signer, crash_after
):
    fresh = softhsm_new_key("main")
    old = softhsm_signer(softhsm_key, kid="hsm-old")
    new = softhsm_signer(fresh, kid="hsm-new")

    registered = rotate_backend_key(maskinporten_emulator, old, new, crash_after)

    assert registered.public_numbers() == fresh.public_key.public_numbers()
    registered.verify(new.sign(b"probe"), b"probe", padding.PKCS1v15(), hashes.SHA256())
