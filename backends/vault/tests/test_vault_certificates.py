"""certificate_chain: the grant carries x5c, and the leaf certificate must certify the Vault key."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from maskinporten_auth_vault import VaultTransitSigner

from maskinporten_auth.errors import ConfigurationError


def test_matching_chain_is_sent_as_x5c(vault_issue_chain, vault_root, vault_rsa_keys, vault_public_key, vault_sign_jwt,
                                       vault_assert_valid):  # fmt: skip
    name = vault_rsa_keys["rsa-2048"]
    chain, _ca = vault_issue_chain(vault_public_key(name))

    signer = VaultTransitSigner(name, certificate_chain=chain, client=vault_root)
    token = vault_sign_jwt(signer)

    vault_assert_valid(token, vault_public_key(name), "RS256")
    assert signer.kid is None
    assert len(signer.x5c) == 2
    assert signer.public_jwk()["x5c"] == signer.x5c


def test_chain_for_another_key_fails_on_first_use(vault_issue_chain, vault_root, vault_rsa_keys):
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    chain, _ca = vault_issue_chain(other)
    signer = VaultTransitSigner(vault_rsa_keys["rsa-2048"], certificate_chain=chain, client=vault_root)

    with pytest.raises(ConfigurationError, match="does not match the signing key") as caught:
        signer.sign(b"header.claims")
    assert caught.value.field == "certificate_chain"


def test_kid_and_chain_together_are_refused(vault_issue_chain, vault_rsa_keys, vault_public_key):
    name = vault_rsa_keys["rsa-2048"]

    with pytest.raises(ConfigurationError) as caught:
        VaultTransitSigner(name, kid="k", certificate_chain=vault_issue_chain(vault_public_key(name))[0])
    assert caught.value.field == "kid"
