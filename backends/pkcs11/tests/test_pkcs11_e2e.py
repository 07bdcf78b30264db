"""End to end: grants signed on the token exchanged for access tokens at the local Maskinporten emulator."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
from jose import jwt
from maskinporten_auth_pkcs11 import Pkcs11Signer

from maskinporten_auth import ConfigurationError, MaskinportenAuth
from maskinporten_auth.cli import main
from maskinporten_auth.jwk import public_key_from_jwk
from maskinporten_auth.testing import MaskinportenEmulator

ORGNO = "313042995"
SCOPE = "nav:example/pkcs11.read"
MASKINPORTEN = Path(sys.executable).with_name("maskinporten")


def access_token_claims(emulator: MaskinportenEmulator, token: str) -> dict:
    return jwt.decode(token, emulator.jwks, algorithms=["RS256"], options={"verify_aud": False})


def key_uri(softhsm, key, pin_file: Path, *, type_: str = "private") -> str:
    return (
        f"pkcs11:token={quote(softhsm.labels[key.role])};object={quote(key.label)};type={type_}"
        f"?module-path={softhsm.module}&pin-source={pin_file.as_uri()}"
    )


@pytest.mark.parametrize("algorithm", ["RS256", "RS384", "RS512"])
def test_token_from_a_grant_signed_on_the_token(maskinporten_emulator, softhsm_key, softhsm_signer, algorithm):
    client_id = str(uuid.uuid4())
    maskinporten_emulator.register_client(
        client_id,
        orgno=ORGNO,
        scopes=[SCOPE],
        keys={"hsm-kid": softhsm_key.public_key},  # as read from the token
    )
    signer = softhsm_signer(softhsm_key, kid="hsm-kid", algorithm=algorithm)

    token = MaskinportenAuth(
        client_id=client_id, scopes=SCOPE, signer=signer, environment=maskinporten_emulator.environment
    ).get_token()

    claims = access_token_claims(maskinporten_emulator, token)
    assert (claims["client_id"], claims["scope"], claims["client_amr"]) == (client_id, SCOPE, "private_key_jwt")


@pytest.mark.asyncio
async def test_async_token(maskinporten_emulator, softhsm_key, softhsm_signer):
    client_id = str(uuid.uuid4())
    maskinporten_emulator.register_client(client_id, orgno=ORGNO, scopes=[SCOPE], keys={"k": softhsm_key.public_key})
    signer = softhsm_signer(softhsm_key, kid="k")
    await signer.averify_key()

    auth = MaskinportenAuth(
        client_id=client_id, scopes=SCOPE, signer=signer, environment=maskinporten_emulator.environment
    )
    token = await auth.aget_token()

    assert access_token_claims(maskinporten_emulator, token)["client_id"] == client_id


@pytest.fixture
def certified_key(softhsm_new_key, softhsm_issue_chain, softhsm_store_certificates):
    """A key whose enterprise certificate (with the key's id) and issuing CA are stored on the token."""
    key = softhsm_new_key()
    leaf, ca = softhsm_issue_chain(key.public_key)
    softhsm_store_certificates(key, leaf, ca)
    return key, leaf, ca


def test_enterprise_certificate_on_the_token_as_x5c(maskinporten_emulator, softhsm, certified_key):
    key, leaf, ca = certified_key
    client_id = str(uuid.uuid4())
    maskinporten_emulator.register_client(client_id, orgno=ORGNO, scopes=[SCOPE], certificates=[ca])

    signer = Pkcs11Signer.from_token_certificate(
        softhsm.module, token_label=softhsm.labels["main"], key_label=key.label, pin=softhsm.pin, algorithm="RS512"
    )
    token = MaskinportenAuth(
        client_id=client_id, scopes=SCOPE, signer=signer, environment=maskinporten_emulator.environment
    ).get_token()

    assert access_token_claims(maskinporten_emulator, token)["client_amr"] == "virksomhetssertifikat"
    assert signer.kid is None
    assert [c.serial_number for c in signer.certificate_chain.certificates] == [leaf.serial_number, ca.serial_number]
    assert "x5t#S256=" in signer.key_identity


def test_a_key_without_a_certificate_on_the_token_is_refused_for_x5c(softhsm, softhsm_key):
    with pytest.raises(ConfigurationError, match="holds no certificate with the key's CKA_ID") as caught:
        Pkcs11Signer.from_token_certificate(
            softhsm.module, token_label=softhsm.labels["main"], key_label=softhsm_key.label, pin=softhsm.pin
        )

    assert caught.value.field == "certificate"


def test_from_env_with_a_pkcs11_uri_and_type_cert(maskinporten_emulator, softhsm, certified_key, tmp_path,
                                                  monkeypatch):  # fmt: skip
    key, _leaf, ca = certified_key
    client_id = str(uuid.uuid4())
    maskinporten_emulator.register_client(client_id, orgno=ORGNO, scopes=[SCOPE], certificates=[ca])
    for name, value in {
        "MASKINPORTEN_ENV": maskinporten_emulator.issuer,
        "MASKINPORTEN_CLIENT_ID": client_id,
        "MASKINPORTEN_SCOPES": SCOPE,
        "MASKINPORTEN_KEY": key_uri(softhsm, key, softhsm.pin_file(tmp_path), type_="cert"),
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("MASKINPORTEN_KID", raising=False)

    token = MaskinportenAuth.from_env().get_token()

    assert access_token_claims(maskinporten_emulator, token)["client_id"] == client_id


def test_cli_jwk_exports_the_public_key_from_the_token(softhsm, softhsm_key, tmp_path, capsys):
    status = main(["jwk", key_uri(softhsm, softhsm_key, softhsm.pin_file(tmp_path)), "--kid", "mp-2026-1"])

    output = capsys.readouterr()
    jwk = json.loads(output.out)
    assert status == 0
    assert (jwk["kid"], jwk["alg"], jwk["use"]) == ("mp-2026-1", "RS256", "sig")
    assert public_key_from_jwk(jwk).public_numbers() == softhsm_key.public_key.public_numbers()
    assert softhsm.pin not in output.out + output.err


def test_cli_token_in_a_process_of_its_own(maskinporten_emulator, softhsm, softhsm_key, tmp_path):
    client_id = str(uuid.uuid4())
    maskinporten_emulator.register_client(client_id, orgno=ORGNO, scopes=[SCOPE], keys={"cli": softhsm_key.public_key})
    environ = {name: value for name, value in os.environ.items() if not name.startswith("MASKINPORTEN_")}
    environ.update(
        MASKINPORTEN_ENV=maskinporten_emulator.issuer,
        MASKINPORTEN_CLIENT_ID=client_id,
        MASKINPORTEN_SCOPES=SCOPE,
        MASKINPORTEN_KEY=key_uri(softhsm, softhsm_key, softhsm.pin_file(tmp_path)),
        MASKINPORTEN_KID="cli",
    )  # SOFTHSM2_CONF is inherited: the child opens the same token directory and logs in itself

    result = subprocess.run([str(MASKINPORTEN), "token"], env=environ, capture_output=True, text=True, timeout=60,
                            check=False)  # fmt: skip

    assert result.returncode == 0, result.stderr
    assert access_token_claims(maskinporten_emulator, result.stdout.strip())["client_id"] == client_id
    assert softhsm.pin not in result.stdout + result.stderr
