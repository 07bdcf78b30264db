"""Failures on the device are typed SigningErrors with a hint, and the PIN never shows up anywhere."""

from __future__ import annotations

import logging
import secrets
import traceback

import pytest
from cryptography.hazmat.primitives import serialization
from maskinporten_auth_pkcs11 import Pkcs11Signer
from maskinporten_auth_pkcs11.errors import signing_error
from maskinporten_auth_pkcs11.module import TokenSelector
from pkcs11 import exceptions as p11

from maskinporten_auth import ConfigurationError, SigningError


def everything_shown(caught: BaseException, signer: Pkcs11Signer, caplog: pytest.LogCaptureFixture) -> str:
    """Every text a PIN could leak into: the exception chain with tracebacks, the repr and the log records."""
    chain = "".join(traceback.format_exception(caught))
    return "\n".join([chain, repr(signer), str(signer), caplog.text])


def test_a_wrong_pin_is_a_signing_error_with_a_hint_and_never_tried_twice(softhsm, softhsm_new_key, caplog,
                                                                          monkeypatch):  # fmt: skip
    caplog.set_level(logging.DEBUG)
    key = softhsm_new_key("nologin")  # the fixture's session logged out again: nobody is logged in to this token
    token_lookups = []
    find = TokenSelector.find
    monkeypatch.setattr(TokenSelector, "find", lambda self, lib: token_lookups.append(self) or find(self, lib))
    wrong = secrets.token_urlsafe(48)
    signer = Pkcs11Signer(softhsm.module, token_label=softhsm.labels["nologin"], key_label=key.label, pin=wrong,
                          kid="k")  # fmt: skip

    with pytest.raises(SigningError) as caught:
        signer.sign(b"x")
    with pytest.raises(SigningError, match="PinIncorrect"):
        signer.sign(b"x")  # a retry: the refused PIN is not sent to the token again

    assert len(token_lookups) == 1
    assert caught.value.backend == "pkcs11"
    assert "PinIncorrect" in str(caught.value)
    assert "PIN is wrong" in caught.value.hint
    assert "never tries a refused PIN again" in caught.value.hint
    assert softhsm.labels["nologin"] in caught.value.key
    shown = everything_shown(caught.value, signer, caplog)
    assert wrong not in shown
    assert softhsm.pin not in shown


def test_a_locked_pin_maps_to_a_signing_error_with_a_hint():
    # SoftHSM2 never locks a PIN (it has no retry counter), so the mapping of CKR_PIN_LOCKED is checked directly.
    error = signing_error(p11.PinLocked(), action="logging in", key="pkcs11:token=t;object=k")

    assert isinstance(error, SigningError)
    assert "PinLocked" in str(error)
    assert "security officer must unlock" in error.hint


def test_a_missing_key_names_the_key(softhsm, softhsm_signer, softhsm_key):
    signer = Pkcs11Signer(softhsm.module, token_label=softhsm.labels["main"], key_label="no-such-key", pin=softhsm.pin,
                          kid="k")  # fmt: skip

    with pytest.raises(SigningError, match="NoSuchKey") as caught:
        signer.sign(b"x")

    assert caught.value.key == f"pkcs11:token={softhsm.labels['main']};object=no-such-key"
    assert "--list-objects" in caught.value.hint


def test_a_file_that_is_no_pkcs11_module_is_a_signing_error_with_a_hint(softhsm, tmp_path):
    not_a_module = tmp_path / "libvendor.so"
    not_a_module.write_bytes(b"not a shared library")
    signer = Pkcs11Signer(not_a_module, token_label="t", key_label="k", pin=softhsm.pin, kid="k")

    with pytest.raises(SigningError, match="cannot load the PKCS#11 module") as caught:
        signer.sign(b"x")

    assert "vendor's PKCS#11 library" in caught.value.hint
    assert softhsm.pin not in str(caught.value)


def test_a_missing_token_is_a_signing_error(softhsm):
    signer = Pkcs11Signer(softhsm.module, token_label="no-such-token", key_label="k", pin=softhsm.pin, kid="k")

    with pytest.raises(SigningError, match="NoSuchToken") as caught:
        signer.public_jwk()

    assert "--list-token-slots" in caught.value.hint


@pytest.mark.parametrize(("extractable", "sensitive"), [(True, False), (True, True), (False, False)])
def test_a_key_that_could_leave_the_token_is_refused(softhsm_new_key, softhsm_signer, extractable, sensitive):
    key = softhsm_new_key(extractable=extractable, sensitive=sensitive)
    signer = softhsm_signer(key)

    with pytest.raises(SigningError, match="could leave the token") as caught:
        signer.sign(b"x")
    with pytest.raises(SigningError, match="could leave the token"):
        signer.public_jwk()

    assert caught.value.key == signer.key_name
    assert key.label in str(caught.value)
    assert "CKA_EXTRACTABLE false" in caught.value.hint


def test_a_certificate_for_another_key_is_refused(softhsm_key, softhsm_new_key, softhsm_signer,
                                                                 softhsm_issue_chain):  # fmt: skip
    other = softhsm_new_key()
    leaf, _ca = softhsm_issue_chain(other.public_key)
    signer = softhsm_signer(softhsm_key, kid=None, certificate_chain=leaf.public_bytes(serialization.Encoding.PEM))

    with pytest.raises(ConfigurationError, match="does not match the signing key"):
        signer.sign(b"x")


def test_a_removed_token_is_a_signing_error_with_a_hint(softhsm, softhsm_new_key, softhsm_signer, softhsm_verify,
                                                        softhsm_remove_token, caplog):  # fmt: skip
    caplog.set_level(logging.DEBUG)
    key = softhsm_new_key("removable")
    signer = softhsm_signer(key)
    softhsm_verify(key.public_key, "RS256", b"before", signer.sign(b"before"))

    softhsm_remove_token("removable")
    with pytest.raises(SigningError) as caught:
        signer.sign(b"after")

    assert "the session was lost" in str(caught.value)
    assert "token was removed" in caught.value.hint
    assert softhsm.pin not in everything_shown(caught.value, signer, caplog)
    # The other tokens of the module are untouched.
    main = softhsm_new_key("main")
    softhsm_verify(main.public_key, "RS256", b"x", softhsm_signer(main).sign(b"x"))


def test_the_pin_is_in_no_repr_log_or_exception(softhsm, softhsm_key, softhsm_signer, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    signers = [
        softhsm_signer(softhsm_key),
        Pkcs11Signer(softhsm.module, token_label=softhsm.labels["main"], key_label=softhsm_key.label,
                     pin_file=softhsm.pin_file(tmp_path), kid="k"),
    ]  # fmt: skip
    failing = Pkcs11Signer(softhsm.module, token_label=softhsm.labels["main"], key_label="absent", pin=softhsm.pin,
                           kid="k")  # fmt: skip

    for signer in signers:
        signer.sign(b"x")
        signer.public_jwk()
    with pytest.raises(SigningError) as caught:
        failing.sign(b"x")

    shown = [repr(s) for s in [*signers, failing]] + [str(s.__dict__) for s in [*signers, failing]]
    shown += [everything_shown(caught.value, failing, caplog), repr(signers[0]._pin), str(signers[0]._pin)]
    assert not [text for text in shown if softhsm.pin in text]
    assert "found the private key" in caplog.text  # the signers did log
