"""Rotating a client to a new Cloud KMS key version through the self-service API, with crashes (the fake Cloud KMS)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from maskinporten_auth.testing.rotation import ROTATION_STEPS, rotate_backend_key


@pytest.mark.parametrize("crash_after", ROTATION_STEPS)
def test_a_new_key_version_is_registered_verified_and_switched_to_after_a_crash(
    maskinporten_emulator, gcp_key, gcp_make_signer, crash_after
):
    old = gcp_make_signer(gcp_key(), kid="gcp-old")
    version = gcp_key()
    new = gcp_make_signer(version, kid="gcp-new")

    registered = rotate_backend_key(maskinporten_emulator, old, new, crash_after)

    assert registered.public_numbers() == version.public_key().public_numbers()
    registered.verify(new.sign(b"probe"), b"probe", padding.PKCS1v15(), hashes.SHA256())
