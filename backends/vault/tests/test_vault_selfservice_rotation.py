"""Rotating a client from one Vault Transit key version to the next through the self-service API, with crashes."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from maskinporten_auth_vault import VaultTransitSigner

from maskinporten_auth import LocalKeySigner, MaskinportenAuth
from maskinporten_auth.cli import main
from maskinporten_auth.jwk import public_key_from_jwk
from maskinporten_auth.selfservice import ADMIN_SCOPES, SelfService
from maskinporten_auth.testing.rotation import ROTATION_STEPS, rotate_backend_key


@pytest.mark.parametrize("crash_after", ROTATION_STEPS)
def test_a_new_key_version_is_registered_verified_and_switched_to_after_a_crash(
    maskinporten_emulator, vault_root, vault_new_key, vault_public_key, crash_after
):
    name = vault_new_key()
    vault_root.secrets.transit.rotate_key(name)
    old = VaultTransitSigner(name, key_version=1, kid="v1", client=vault_root)
    new = VaultTransitSigner(name, key_version=2, kid="v2", client=vault_root)

    registered = rotate_backend_key(maskinporten_emulator, old, new, crash_after)

    assert registered.public_numbers() == vault_public_key(name, 2).public_numbers()
    signature = new.sign(b"probe")
    registered.verify(signature, b"probe", padding.PKCS1v15(), hashes.SHA256())


def test_keys_rotate_takes_a_new_key_version_by_its_uri_and_registers_only_its_public_key(
    maskinporten_emulator, vault_env, vault_root, vault_new_key, vault_public_key, tmp_path, monkeypatch, capsys
):
    name = vault_new_key()
    admin_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    admin_file = tmp_path / "admin.pem"
    admin_file.write_bytes(
        admin_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    maskinporten_emulator.register_client(
        "admin", orgno="313042995", scopes=list(ADMIN_SCOPES), keys={"admin": admin_key.public_key()}
    )
    maskinporten_emulator.register_client(
        "app", orgno="313042995", scopes=["nav:inntektsmelding/lps.write"], keys={"v1": vault_public_key(name, 1)}
    )
    for variable, value in {
        "MASKINPORTEN_ENV": maskinporten_emulator.issuer,
        "MASKINPORTEN_CLIENT_ID": "admin",
        "MASKINPORTEN_KEY": admin_file.as_uri(),
        "MASKINPORTEN_KID": "admin",
        "MASKINPORTEN_SELFSERVICE_URL": maskinporten_emulator.selfservice_url,
    }.items():
        monkeypatch.setenv(variable, value)
    vault_root.secrets.transit.rotate_key(name)

    uri = f"vault-transit://transit/{name}?version=2"
    assert main(["keys", "rotate", uri, "--new-kid", "v2", "--client-id", "app", "--old-kid", "v1"]) == 0
    assert f"export MASKINPORTEN_KEY='{uri}'" in capsys.readouterr().out
    assert main(["keys", "list", "--client-id", "app", "--json"]) == 0
    assert [key["kid"] for key in json.loads(capsys.readouterr().out)] == ["v1", "v2"]
    admin = MaskinportenAuth(
        "admin", list(ADMIN_SCOPES), LocalKeySigner(admin_key, kid="admin"), maskinporten_emulator.environment
    )
    with admin, SelfService(admin, maskinporten_emulator.selfservice_url) as api:
        (v2,) = [key for key in api.keys("app") if key.kid == "v2"]
    assert public_key_from_jwk(v2.jwk).public_numbers() == vault_public_key(name, 2).public_numbers()
    assert set(v2.jwk) == {"kty", "kid", "alg", "use", "n", "e", "exp"}
