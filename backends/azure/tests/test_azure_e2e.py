"""End to end: a Key Vault-signed grant exchanged for an access token at the local Maskinporten emulator."""

from __future__ import annotations

import uuid

import pytest
from jose import jwt
from maskinporten_auth_azure import AzureKeyVaultSigner
from maskinporten_auth_azure import testing as fkv

from maskinporten_auth import MaskinportenAuth
from maskinporten_auth.testing import MaskinportenEmulator, longest_stall, with_added_latency

ORGNO = "313042995"
SCOPE = "nav:example/azure.read"


@pytest.fixture
def akv_emulator():
    with MaskinportenEmulator() as emulator:
        yield emulator


def access_token_claims(emulator: MaskinportenEmulator, token: str) -> dict:
    return jwt.decode(token, emulator.jwks, algorithms=["RS256"], options={"verify_aud": False})


@pytest.mark.parametrize("algorithm", ["RS256", "RS384", "RS512"])
def test_token_from_a_key_vault_signed_grant(akv_emulator, akv_server, akv_rsa_key, akv_make_signer, algorithm):
    client_id = str(uuid.uuid4())
    signer = akv_make_signer(akv_server.key_url(akv_rsa_key.name), kid="akv-e2e", algorithm=algorithm)
    akv_emulator.register_client(client_id, orgno=ORGNO, scopes=[SCOPE], keys={"akv-e2e": signer.public_jwk()})
    auth = MaskinportenAuth(client_id=client_id, scopes=[SCOPE], signer=signer, environment=akv_emulator.environment)

    try:
        claims = access_token_claims(akv_emulator, auth.get_token())
    finally:
        auth.close()

    assert claims["client_id"] == client_id
    assert claims["scope"] == SCOPE
    assert claims["consumer"]["ID"] == f"0192:{ORGNO}"


@pytest.mark.asyncio
async def test_async_token_from_a_key_vault_signed_grant(akv_emulator, akv_server, akv_rsa_key, akv_make_signer):
    client_id = str(uuid.uuid4())
    signer = akv_make_signer(akv_server.key_url(akv_rsa_key), kid="akv-e2e-async")
    akv_emulator.register_client(client_id, orgno=ORGNO, scopes=[SCOPE], keys={"akv-e2e-async": signer.public_jwk()})
    auth = MaskinportenAuth(client_id=client_id, scopes=SCOPE, signer=signer, environment=akv_emulator.environment)

    try:
        token = await auth.aget_token()
    finally:
        auth.close()

    assert access_token_claims(akv_emulator, token)["client_id"] == client_id


def test_a_key_vault_certificate_as_x5c(
    akv_emulator, akv_server, azure_credential, akv_client_kwargs, akv_enterprise_ca
):
    name = "virksomhet-" + uuid.uuid4().hex[:8]
    akv_server.create_certificate(name, issuer=akv_enterprise_ca.issuer)
    signer = AzureKeyVaultSigner.from_certificate(
        akv_server.vault_url,
        name,
        intermediates=fkv.pem([akv_enterprise_ca.intermediate]),
        credential=azure_credential,
        **akv_client_kwargs,
    )
    client_id = str(uuid.uuid4())
    akv_emulator.register_client(client_id, orgno=ORGNO, scopes=[SCOPE], certificates=[akv_enterprise_ca.root])
    auth = MaskinportenAuth(client_id=client_id, scopes=SCOPE, signer=signer, environment=akv_emulator.environment)

    try:
        claims = access_token_claims(akv_emulator, auth.get_token())
    finally:
        auth.close()
        signer.close()

    assert claims["client_amr"] == "virksomhetssertifikat"


def test_the_first_async_token_never_stalls_the_event_loop(akv_emulator, akv_server, akv_rsa_key, akv_make_signer):
    client_id = str(uuid.uuid4())
    key_url = akv_server.key_url(akv_rsa_key)
    registered = akv_make_signer(key_url, kid="akv-loop")
    akv_emulator.register_client(client_id, orgno=ORGNO, scopes=[SCOPE], keys={"akv-loop": registered.public_jwk()})
    fresh = with_added_latency(akv_make_signer(key_url, kid="akv-loop"), 0.3)
    auth = MaskinportenAuth(client_id, SCOPE, fresh, environment=akv_emulator.environment)

    try:
        token, stall = longest_stall(auth.aget_token)
    finally:
        auth.close()

    assert access_token_claims(akv_emulator, token)["client_id"] == client_id
    assert stall < 0.1, f"the event loop stalled for {stall * 1000:.0f} ms"
