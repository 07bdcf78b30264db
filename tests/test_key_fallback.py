"""A replaced signing key while its kid propagates: a grant refused for the unknown kid is signed again with the key
Maskinporten still knows, in every view, and only then (the end-to-end rotation is in test_rotation.py).
"""

from __future__ import annotations

import pytest

from maskinporten_auth import InvalidGrantError, LocalKeySigner, RetryPolicy
from maskinporten_auth.testing import MaskinportenEmulator

from .conftest import SCOPE, SUPPLIER

#: One attempt, no retry: the fallback to the previous key must not need a retry.
ONCE = RetryPolicy(attempts=1, deadline=10.0, timeout=5.0)
CUSTOMER = "310539759"
NEW_KID = "new-key-not-registered-yet"


def kids(maskinporten_emulator: MaskinportenEmulator) -> list[str | None]:
    """The kid of every grant the emulator received, in order."""
    return [grant.header.get("kid") for grant in maskinporten_emulator.grants]


def test_a_view_made_before_the_replacement_signs_with_the_new_key_and_falls_back_too(
    make_auth, maskinporten_emulator, other_rsa_key
):
    maskinporten_emulator.delegate(CUSTOMER, SUPPLIER, SCOPE)
    auth = make_auth(retry=ONCE)
    view = auth.with_consumer_org(CUSTOMER)
    auth.replace_signer(LocalKeySigner(other_rsa_key, kid=NEW_KID))
    assert view.get_token()
    assert kids(maskinporten_emulator) == [NEW_KID, "test-key-1"]


def test_once_the_new_kid_is_registered_no_grant_is_signed_with_the_previous_key(
    make_auth, maskinporten_emulator, registered_client, rsa_key, other_rsa_key
):
    auth = make_auth(retry=ONCE)
    auth.replace_signer(LocalKeySigner(other_rsa_key, kid=NEW_KID))
    maskinporten_emulator.register_client(
        registered_client,
        orgno=SUPPLIER,
        scopes=[SCOPE],
        keys={"test-key-1": rsa_key.public_key(), NEW_KID: other_rsa_key.public_key()},
    )
    assert auth.get_token()
    assert kids(maskinporten_emulator) == [NEW_KID]


def test_without_a_replacement_an_unknown_kid_is_refused_at_once(make_auth, maskinporten_emulator, other_rsa_key):
    auth = make_auth(retry=ONCE, signer=LocalKeySigner(other_rsa_key, kid=NEW_KID))
    with pytest.raises(InvalidGrantError):
        auth.get_token()
    assert kids(maskinporten_emulator) == [NEW_KID]
