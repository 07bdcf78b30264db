"""Signing on the token: every algorithm verified with cryptography against the public key read from the token."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from maskinporten_auth_pkcs11 import Pkcs11Signer

from maskinporten_auth import ConfigurationError, SigningError
from maskinporten_auth.jwk import public_key_from_jwk


@pytest.mark.parametrize("algorithm", ["RS256", "RS384", "RS512"])
def test_signatures_verify_against_the_tokens_public_key(softhsm_key, softhsm_signer, softhsm_verify, algorithm):
    signer = softhsm_signer(softhsm_key, algorithm=algorithm)

    signature = signer.sign(b"header.claims")

    softhsm_verify(softhsm_key.public_key, algorithm, b"header.claims", signature)
    assert len(signature) == 256


@pytest.mark.parametrize("bits", [3072, 4096])
def test_larger_keys_sign(softhsm_new_key, softhsm_signer, softhsm_verify, bits):
    key = softhsm_new_key(bits=bits)

    signature = softhsm_signer(key).sign(b"x")

    softhsm_verify(key.public_key, "RS256", b"x", signature)
    assert len(signature) == bits // 8


def test_public_jwk_comes_from_the_token(softhsm_key, softhsm_signer):
    jwk = softhsm_signer(softhsm_key, kid="mp-2026", algorithm="RS384").public_jwk()

    assert (jwk["kid"], jwk["alg"], jwk["use"], jwk["kty"]) == ("mp-2026", "RS384", "sig", "RSA")
    assert public_key_from_jwk(jwk).public_numbers() == softhsm_key.public_key.public_numbers()
    assert "d" not in jwk


def test_the_key_can_be_named_by_id_alone(softhsm, softhsm_key, softhsm_verify):
    signer = Pkcs11Signer(softhsm.module, token_label=softhsm.labels["main"], key_id=softhsm_key.id, pin=softhsm.pin,
                          kid="by-id")  # fmt: skip
    by_hex = Pkcs11Signer(softhsm.module, token_label=softhsm.labels["main"], key_id=softhsm_key.id.hex(),
                          key_label=softhsm_key.label, pin=softhsm.pin, kid="by-hex")  # fmt: skip

    softhsm_verify(softhsm_key.public_key, "RS256", b"x", signer.sign(b"x"))
    softhsm_verify(softhsm_key.public_key, "RS256", b"y", by_hex.sign(b"y"))


def test_the_token_can_be_named_by_slot(softhsm, softhsm_key, softhsm_verify, tmp_path):
    slot = softhsm.token("main").slot.slot_id
    signer = Pkcs11Signer(softhsm.module, slot=slot, key_label=softhsm_key.label, pin_file=softhsm.pin_file(tmp_path),
                          kid="by-slot")  # fmt: skip

    softhsm_verify(softhsm_key.public_key, "RS256", b"x", signer.sign(b"x"))


def test_key_identity_comes_from_configuration_without_touching_the_device(softhsm, softhsm_key, softhsm_issue_chain):
    def signer(**options):
        options = {"token_label": "no-such-token", "key_label": "k", "pin": softhsm.pin, "kid": "a", **options}
        return Pkcs11Signer(softhsm.module, **options)

    leaf, _ca = softhsm_issue_chain(softhsm_key.public_key)
    chain = signer(kid=None, certificate_chain=leaf.public_bytes(serialization.Encoding.PEM))

    # A token that does not exist: any device call would fail, so these come from configuration alone.
    assert signer().key_identity == signer().key_identity
    assert signer().key_identity.startswith("pkcs11:token=no-such-token;object=k?module-path=")
    assert len({signer().key_identity, signer(kid="b").key_identity, signer(key_label="k2").key_identity,
                signer(key_id=b"\x01").key_identity, chain.key_identity}) == 5  # fmt: skip
    assert "x5t#S256=" in chain.key_identity
    assert softhsm.pin not in signer().key_identity
    with pytest.raises(SigningError, match="no-such-token"):
        signer().sign(b"x")


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"token_label": None}, "token_label"),
        ({"slot": 1}, "token_label"),
        ({"slot": -1, "token_label": None}, "slot"),
        ({"token_label": "x" * 33}, "token_label"),
        ({"key_label": None}, "key_label"),
        ({"key_id": "zz"}, "key_id"),
        ({"pin": None}, "pin"),
        ({"pin_file": "/nonexistent/pin"}, "pin"),
        ({"pin": None, "pin_file": "/nonexistent/pin"}, "pin_file"),
        ({"pin": ""}, "pin"),
        ({"algorithm": "PS256"}, "algorithm"),
        ({"kid": " padded "}, "kid"),
    ],
)
def test_bad_configuration_fails_at_construction(softhsm, options, field):
    settings = {"token_label": "t", "key_label": "k", "pin": softhsm.pin, **options}

    with pytest.raises(ConfigurationError) as caught:
        Pkcs11Signer(softhsm.module, **settings)

    assert caught.value.field == field
    assert softhsm.pin not in str(caught.value)


def test_a_missing_module_fails_at_construction(softhsm):
    with pytest.raises(ConfigurationError, match="no PKCS#11 module") as caught:
        Pkcs11Signer("/nonexistent/libvendor.so", token_label="t", key_label="k", pin=softhsm.pin)

    assert caught.value.field == "library_path"
