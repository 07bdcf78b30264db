"""certificate_chain: the grant carries x5c, and the leaf certificate must certify the Vault key."""

from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from maskinporten_auth.errors import ConfigurationError
from maskinporten_auth_vault import VaultTransitSigner


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def chain_for(public_key: rsa.RSAPublicKey) -> bytes:
    """A leaf certificate for ``public_key`` issued by a fresh CA, leaf first, as PEM."""
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.datetime.now(datetime.timezone.utc)

    def certificate(subject: str, key: rsa.RSAPublicKey, *, ca: bool) -> x509.Certificate:
        return (
            x509.CertificateBuilder()
            .subject_name(_name(subject))
            .issuer_name(_name("Test CA"))
            .public_key(key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256())
        )

    leaf = certificate("TEST VIRKSOMHET AS", public_key, ca=False)
    root = certificate("Test CA", ca_key.public_key(), ca=True)
    return b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in (leaf, root))


def test_matching_chain_is_sent_as_x5c(vault_root, vault_rsa_keys, vault_public_key, vault_sign_jwt,
                                       vault_assert_valid):  # fmt: skip
    name = vault_rsa_keys["rsa-2048"]
    chain = chain_for(vault_public_key(name))

    signer = VaultTransitSigner(name, certificate_chain=chain, client=vault_root)
    token = vault_sign_jwt(signer)

    vault_assert_valid(token, vault_public_key(name), "RS256")
    assert signer.kid is None
    assert len(signer.x5c) == 2
    assert signer.public_jwk()["x5c"] == signer.x5c


def test_chain_for_another_key_fails_on_first_use(vault_root, vault_rsa_keys):
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    signer = VaultTransitSigner(vault_rsa_keys["rsa-2048"], certificate_chain=chain_for(other), client=vault_root)

    with pytest.raises(ConfigurationError, match="does not match the signing key") as caught:
        signer.sign(b"header.claims")
    assert caught.value.field == "certificate_chain"


def test_kid_and_chain_together_are_refused(vault_rsa_keys, vault_public_key):
    name = vault_rsa_keys["rsa-2048"]

    with pytest.raises(ConfigurationError) as caught:
        VaultTransitSigner(name, kid="k", certificate_chain=chain_for(vault_public_key(name)))
    assert caught.value.field == "kid"
