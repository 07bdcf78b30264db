"""Rotating a client from one KMS key to a new one through the self-service API, with crashes (LocalStack)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from maskinporten_auth_awskms import AwsKmsSigner

from maskinporten_auth.testing.rotation import ROTATION_STEPS, rotate_backend_key


@pytest.mark.parametrize("crash_after", ROTATION_STEPS)
def test_a_new_kms_key_is_registered_verified_and_switched_to_after_a_crash(
    maskinporten_emulator, kms_client, kms_create_key, kms_public_key, crash_after
):
    old = AwsKmsSigner(kms_create_key(), kid="kms-old", client=kms_client)
    new_key_id = kms_create_key()
    new = AwsKmsSigner(new_key_id, kid="kms-new", client=kms_client)

    registered = rotate_backend_key(maskinporten_emulator, old, new, crash_after)

    assert registered.public_numbers() == kms_public_key(new_key_id).public_numbers()
    registered.verify(new.sign(b"probe"), b"probe", padding.PKCS1v15(), hashes.SHA256())
