"""End to end: a Vault-signed grant exchanged for an access token at the local Maskinporten emulator."""

from __future__ import annotations

import uuid

import pytest
from jose import jwt
from maskinporten_auth_vault import VaultTransitSigner

from maskinporten_auth import InvalidGrantError, MaskinportenAuth
from maskinporten_auth.testing import MaskinportenEmulator, longest_stall, with_added_latency

ORGNO = "313042995"
SCOPE = "nav:example/vault.read"


def new_client_id() -> str:
    return str(uuid.uuid4())


def access_token_claims(emulator: MaskinportenEmulator, token: str) -> dict:
    return jwt.decode(token, emulator.jwks, algorithms=["RS256"], options={"verify_aud": False})


@pytest.mark.parametrize("algorithm", ["RS256", "RS512"])
def test_token_from_a_vault_signed_grant(maskinporten_emulator, vault_root, vault_rsa_keys, algorithm):
    client_id = new_client_id()
    signer = VaultTransitSigner(vault_rsa_keys["rsa-3072"], kid="vault-e2e", algorithm=algorithm, client=vault_root)
    maskinporten_emulator.register_client(
        client_id, orgno=ORGNO, scopes=[SCOPE], keys={"vault-e2e": signer.public_jwk()}
    )

    token = MaskinportenAuth(
        client_id=client_id, scopes=SCOPE, signer=signer, environment=maskinporten_emulator.environment
    ).get_token()

    claims = access_token_claims(maskinporten_emulator, token)
    assert claims["client_id"] == client_id
    assert claims["scope"] == SCOPE
    assert claims["consumer"]["ID"] == f"0192:{ORGNO}"


@pytest.mark.asyncio
async def test_async_token_with_a_least_privilege_token(maskinporten_emulator, bao_server, vault_new_key,
                                                        vault_least_privilege_token):  # fmt: skip
    name = vault_new_key()
    signer = VaultTransitSigner(name, kid="least", client=bao_server.client(vault_least_privilege_token(name)))
    client_id = new_client_id()
    maskinporten_emulator.register_client(client_id, orgno=ORGNO, scopes=[SCOPE], keys={"least": signer.public_jwk()})

    auth = MaskinportenAuth(
        client_id=client_id, scopes=SCOPE, signer=signer, environment=maskinporten_emulator.environment
    )

    assert access_token_claims(maskinporten_emulator, await auth.aget_token())["client_id"] == client_id


def test_enterprise_certificate_chain_as_x5c(maskinporten_emulator, vault_root, vault_rsa_keys, vault_public_key,
                                            vault_issue_chain):  # fmt: skip
    name = vault_rsa_keys["rsa-2048"]
    chain, ca = vault_issue_chain(vault_public_key(name))
    signer = VaultTransitSigner(name, certificate_chain=chain, client=vault_root)
    client_id = new_client_id()
    maskinporten_emulator.register_client(client_id, orgno=ORGNO, scopes=[SCOPE], certificates=[ca])

    token = MaskinportenAuth(
        client_id=client_id, scopes=SCOPE, signer=signer, environment=maskinporten_emulator.environment
    ).get_token()

    assert access_token_claims(maskinporten_emulator, token)["client_amr"] == "virksomhetssertifikat"


def test_documented_rotation_procedure(maskinporten_emulator, vault_root, vault_new_key):
    """Rotate in Vault, keep signing with the pin, register the new JWK, then move the pin."""
    name = vault_new_key()
    client_id = new_client_id()
    v1 = VaultTransitSigner(name, key_version=1, kid="mp-v1", client=vault_root)
    keys = {"mp-v1": v1.public_jwk()}
    maskinporten_emulator.register_client(client_id, orgno=ORGNO, scopes=[SCOPE], keys=keys)

    def token(signer: VaultTransitSigner) -> str:
        return MaskinportenAuth(
            client_id=client_id, scopes=SCOPE, signer=signer, environment=maskinporten_emulator.environment
        ).get_token()

    vault_root.secrets.transit.rotate_key(name)
    assert token(v1)

    v2 = VaultTransitSigner(name, key_version=2, kid="mp-v2", client=vault_root)
    with pytest.raises(InvalidGrantError):
        token(v2)

    maskinporten_emulator.register_client(
        client_id, orgno=ORGNO, scopes=[SCOPE], keys={**keys, "mp-v2": v2.public_jwk()}
    )
    assert token(v2)
    assert token(v1)


def test_the_first_async_token_never_stalls_the_event_loop(maskinporten_emulator, vault_root, vault_rsa_keys):
    registered = VaultTransitSigner(vault_rsa_keys["rsa-2048"], kid="vault-loop", client=vault_root)
    client_id = new_client_id()
    maskinporten_emulator.register_client(
        client_id, orgno=ORGNO, scopes=[SCOPE], keys={"vault-loop": registered.public_jwk()}
    )
    fresh = with_added_latency(VaultTransitSigner(vault_rsa_keys["rsa-2048"], kid="vault-loop", client=vault_root), 0.3)
    auth = MaskinportenAuth(client_id, SCOPE, fresh, environment=maskinporten_emulator.environment)

    token, stall = longest_stall(auth.aget_token)

    assert access_token_claims(maskinporten_emulator, token)["client_id"] == client_id
    assert stall < 0.1, f"the event loop stalled for {stall * 1000:.0f} ms"
