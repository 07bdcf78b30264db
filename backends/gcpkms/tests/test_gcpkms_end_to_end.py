"""End to end: a grant signed in the fake Cloud KMS exchanged for an access token at the Maskinporten emulator."""

from __future__ import annotations

import uuid

import pytest
from jose import jwt

from maskinporten_auth import MaskinportenAuth
from maskinporten_auth.testing import MaskinportenEmulator, longest_stall, with_added_latency

ORGNO = "313042995"
SCOPE = "nav:example/gcp.read"


@pytest.fixture
def gcp_emulator():
    with MaskinportenEmulator() as emulator:
        yield emulator


def access_token_claims(emulator: MaskinportenEmulator, token: str) -> dict:
    return jwt.decode(token, emulator.jwks, algorithms=["RS256"], options={"verify_aud": False})


def registered_auth(emulator: MaskinportenEmulator, signer) -> tuple[str, MaskinportenAuth]:
    client_id = str(uuid.uuid4())
    emulator.register_client(client_id, orgno=ORGNO, scopes=[SCOPE], keys={signer.kid: signer.public_jwk()})
    return client_id, MaskinportenAuth(client_id, SCOPE, signer, environment=emulator.environment)


@pytest.mark.parametrize(
    ("kms_algorithm", "algorithm"),
    [
        ("RSA_SIGN_PKCS1_2048_SHA256", None),
        ("RSA_SIGN_RAW_PKCS1_2048", "RS384"),
        ("RSA_SIGN_PKCS1_4096_SHA512", None),
    ],
)
def test_a_token_from_a_cloud_kms_signed_grant(gcp_emulator, gcp_shared_key, gcp_make_signer, kms_algorithm, algorithm):
    signer = gcp_make_signer(gcp_shared_key(kms_algorithm), algorithm=algorithm)
    client_id, auth = registered_auth(gcp_emulator, signer)

    with auth:
        claims = access_token_claims(gcp_emulator, auth.get_token())

    assert (claims["client_id"], claims["scope"]) == (client_id, SCOPE)
    assert claims["consumer"]["ID"] == f"0192:{ORGNO}"


@pytest.mark.asyncio
async def test_an_async_token_from_a_cloud_kms_signed_grant(gcp_emulator, gcp_key, gcp_make_signer):
    signer = gcp_make_signer(gcp_key())
    client_id, auth = registered_auth(gcp_emulator, signer)

    async with auth:
        token = await auth.aget_token()

    assert access_token_claims(gcp_emulator, token)["client_id"] == client_id


def test_the_first_async_token_never_stalls_the_event_loop(gcp_emulator, gcp_key, gcp_make_signer):
    version = gcp_key()
    registered = gcp_make_signer(version)
    fresh = with_added_latency(gcp_make_signer(version, kid=registered.kid, algorithm="RS256"), 0.3)
    client_id, _ = registered_auth(gcp_emulator, registered)
    auth = MaskinportenAuth(client_id, SCOPE, fresh, environment=gcp_emulator.environment)

    with auth:
        token, stall = longest_stall(auth.aget_token)

    assert access_token_claims(gcp_emulator, token)["client_id"] == client_id
    assert stall < 0.1, f"the event loop stalled for {stall * 1000:.0f} ms"
