"""End to end: a grant signed in LocalStack's KMS exchanged for an access token at the Maskinporten emulator."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from jose import jwt  # type: ignore[import-untyped]
from maskinporten_auth_awskms import AwsKmsSigner

from maskinporten_auth import InvalidGrantError, MaskinportenAuth, signer_from_uri
from maskinporten_auth.testing import MaskinportenEmulator, longest_stall, with_added_latency

ORGNO = "313042995"
SCOPE = "nav:example/kms.read"


@pytest.fixture
def kms_emulator() -> Iterator[MaskinportenEmulator]:
    with MaskinportenEmulator() as emulator:
        yield emulator


def access_token_claims(emulator: MaskinportenEmulator, token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, emulator.jwks, algorithms=["RS256"], options={"verify_aud": False})
    return claims


def get_token(emulator: MaskinportenEmulator, client_id: str, signer: Any) -> str:
    return MaskinportenAuth(
        client_id=client_id, scopes=[SCOPE], signer=signer, environment=emulator.environment
    ).get_token()


@pytest.mark.parametrize("spec", ["RSA_2048", "RSA_3072", "RSA_4096"])
@pytest.mark.parametrize("algorithm", ["RS256", "RS384", "RS512"])
def test_token_for_a_kms_signed_grant(
    kms_emulator: MaskinportenEmulator, kms_client: Any, kms_rsa_keys: dict[str, str], algorithm: str, spec: str
) -> None:
    client_id = str(uuid.uuid4())
    kid = f"kms-{spec}"
    signer = AwsKmsSigner(kms_rsa_keys[spec], kid=kid, algorithm=algorithm, client=kms_client)
    kms_emulator.register_client(client_id, orgno=ORGNO, scopes=[SCOPE], keys={kid: signer.public_jwk()})

    claims = access_token_claims(kms_emulator, get_token(kms_emulator, client_id, signer))

    assert (claims["client_id"], claims["scope"], claims["client_amr"]) == (client_id, SCOPE, "private_key_jwt")
    assert claims["consumer"]["ID"] == f"0192:{ORGNO}"


@pytest.mark.asyncio
async def test_async_token_through_the_key_uri(
    kms_emulator: MaskinportenEmulator, kms_client: Any, kms_create_key: Callable[..., str]
) -> None:
    kms_create_key(alias="alias/maskinporten-e2e")
    signer = signer_from_uri("awskms:///alias/maskinporten-e2e", kid="kms-uri", client=kms_client)
    client_id = str(uuid.uuid4())
    kms_emulator.register_client(client_id, orgno=ORGNO, scopes=[SCOPE], keys={"kms-uri": signer.public_jwk()})
    auth = MaskinportenAuth(client_id=client_id, scopes=SCOPE, signer=signer, environment=kms_emulator.environment)

    assert access_token_claims(kms_emulator, await auth.aget_token())["client_id"] == client_id


def test_enterprise_certificate_with_a_long_chain_as_x5c(
    kms_emulator: MaskinportenEmulator,
    kms_client: Any,
    kms_rsa_keys: dict[str, str],
    kms_public_key: Callable[[str], rsa.RSAPublicKey],
    kms_certificate_chain: Callable[..., tuple[bytes, list[x509.Certificate]]],
) -> None:
    key_id = kms_rsa_keys["RSA_3072"]
    pem, chain = kms_certificate_chain(kms_public_key(key_id), intermediates=4)
    signer = AwsKmsSigner(key_id, certificate_chain=pem, client=kms_client)
    client_id = str(uuid.uuid4())
    kms_emulator.register_client(client_id, orgno=ORGNO, scopes=[SCOPE], certificates=[chain[-1]])

    claims = access_token_claims(kms_emulator, get_token(kms_emulator, client_id, signer))

    assert claims["client_amr"] == "virksomhetssertifikat"


def test_grant_signed_by_another_kms_key_is_rejected(
    kms_emulator: MaskinportenEmulator, kms_client: Any, kms_rsa_keys: dict[str, str]
) -> None:
    registered = AwsKmsSigner(kms_rsa_keys["RSA_2048"], kid="kms-key", client=kms_client)
    other = AwsKmsSigner(kms_rsa_keys["RSA_3072"], kid="kms-key", client=kms_client)
    client_id = str(uuid.uuid4())
    kms_emulator.register_client(client_id, orgno=ORGNO, scopes=[SCOPE], keys={"kms-key": registered.public_jwk()})

    with pytest.raises(InvalidGrantError):
        get_token(kms_emulator, client_id, other)


def test_the_first_async_token_never_stalls_the_event_loop(
    kms_emulator: MaskinportenEmulator, kms_client: Any, kms_rsa_keys: dict[str, str]
) -> None:
    client_id = str(uuid.uuid4())
    registered = AwsKmsSigner(kms_rsa_keys["RSA_2048"], kid="kms-loop", client=kms_client)
    kms_emulator.register_client(client_id, orgno=ORGNO, scopes=[SCOPE], keys={"kms-loop": registered.public_jwk()})
    fresh = with_added_latency(AwsKmsSigner(kms_rsa_keys["RSA_2048"], kid="kms-loop", client=kms_client), 0.3)
    auth = MaskinportenAuth(client_id, SCOPE, fresh, environment=kms_emulator.environment)

    token, stall = longest_stall(auth.aget_token)

    assert access_token_claims(kms_emulator, token)["client_id"] == client_id
    assert stall < 0.1, f"the event loop stalled for {stall * 1000:.0f} ms"
