"""The RFC 7512 key URI: its forms, its errors, and resolution through the core's entry points."""

from __future__ import annotations

import pytest
from maskinporten_auth_pkcs11 import Pkcs11Signer, parse_uri

from maskinporten_auth import ConfigurationError, signer_from_uri

MODULE = "/usr/lib/softhsm/libsofthsm2.so"


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        (
            f"pkcs11:token=MP;object=maskinporten;type=private?module-path={MODULE}&pin-source=file:/run/secrets/pin",
            {"token_label": "MP", "key_label": "maskinporten", "pin_file": "/run/secrets/pin", "type": "private"},
        ),
        (
            f"pkcs11:token=My%20HSM;id=%01%02?module-path={MODULE}&pin-source=file:///run/pin",
            {"token_label": "My HSM", "key_id": b"\x01\x02", "pin_file": "/run/pin", "type": "private"},
        ),
        (
            f"pkcs11:slot-id=7;object=k;id=%A0;type=cert?module-path={MODULE}&pin-source=/etc/hsm/pin",
            {"slot": 7, "key_label": "k", "key_id": b"\xa0", "pin_file": "/etc/hsm/pin", "type": "cert"},
        ),
        (
            f"PKCS11:token=MP;object=k?module-path={MODULE}",
            {"token_label": "MP", "key_label": "k", "type": "private"},
        ),
    ],
)
def test_uri_forms(uri, expected):
    assert parse_uri(uri) == {"library_path": MODULE, **expected}


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("pkcs11:token=MP;object=k", "module-path"),
        (f"pkcs11:token=MP;object=k;serial=1?module-path={MODULE}", "unsupported path attribute 'serial'"),
        (f"pkcs11:token=MP;object=k?module-name=softhsm2&module-path={MODULE}", "'module-name'"),
        (f"pkcs11:token=MP;token=X;object=k?module-path={MODULE}", "given twice"),
        (f"pkcs11:token=MP;object=k;type=public?module-path={MODULE}", "private or cert"),
        (f"pkcs11:slot-id=x;object=k?module-path={MODULE}", "slot-id must be a decimal"),
        (f"pkcs11:token=MP;object?module-path={MODULE}", "has no '='"),
        (f"pkcs11:token=MP;object=k?module-path={MODULE}&pin-source=relative/pin", "absolute path"),
        (f"pkcs11:token=MP;object=k?module-path={MODULE}&pin-source=file://host/pin", "absolute path"),
        (f"pkcs11:token=MP;object=k?module-path={MODULE}#frag", "fragment"),
    ],
)
def test_bad_uris_are_configuration_errors(uri, message):
    with pytest.raises(ConfigurationError, match=message) as caught:
        parse_uri(uri)

    assert caught.value.field == "key"


def test_pin_value_is_refused_without_repeating_it():
    secret = "pin-4a1f9c0e7d2b"

    with pytest.raises(ConfigurationError, match="pin-source=file") as caught:
        signer_from_uri(f"pkcs11:token=MP;object=k?module-path={MODULE}&pin-value={secret}", kid="k")

    assert secret not in str(caught.value)


def test_core_resolves_the_uri_through_the_entry_point(softhsm, softhsm_key, softhsm_verify, tmp_path):
    pin_file = softhsm.pin_file(tmp_path)
    uri = (
        f"pkcs11:token={softhsm.labels['main']};id={''.join(f'%{b:02X}' for b in softhsm_key.id)};type=private"
        f"?module-path={softhsm.module}&pin-source=file:{pin_file}"
    )

    signer = signer_from_uri(uri, kid="from-uri", algorithm="RS384")

    assert isinstance(signer, Pkcs11Signer)
    assert (signer.kid, signer.algorithm, signer.key_id) == ("from-uri", "RS384", softhsm_key.id)
    softhsm_verify(softhsm_key.public_key, "RS384", b"x", signer.sign(b"x"))


def test_the_pin_may_be_passed_beside_the_uri(softhsm, softhsm_key, softhsm_verify):
    uri = f"pkcs11:token={softhsm.labels['main']};object={softhsm_key.label}?module-path={softhsm.module}"

    signer = signer_from_uri(uri, kid="k", pin=softhsm.pin)

    softhsm_verify(softhsm_key.public_key, "RS256", b"x", signer.sign(b"x"))


def test_kid_with_type_cert_and_foreign_options_are_refused(softhsm, tmp_path):
    uri = f"pkcs11:token=MP;object=k;type=cert?module-path={softhsm.module}&pin-source={softhsm.pin_file(tmp_path)}"

    with pytest.raises(ConfigurationError, match="either kid or the token's certificate"):
        signer_from_uri(uri, kid="k")
    with pytest.raises(ConfigurationError) as caught:
        signer_from_uri(uri.replace("type=cert", "type=private"), kid="k", password=b"secret")

    assert caught.value.field == "password"
    assert "secret" not in str(caught.value)
