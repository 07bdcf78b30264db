"""The JWT grant: exactly the documented header and claims, verified with python-jose."""

from __future__ import annotations

import time

import pytest
from jose import jwt

from maskinporten_auth import ConfigurationError, LocalKeySigner, SigningError, systemuser_authorization
from maskinporten_auth.grant import GrantBuilder, GrantClaims, SigningKeys

AUD = "https://test.maskinporten.no/"
CLIENT = "1ab20f23-c69c-44d3-b078-a0d92083ada5"
SCOPE = "nav:oppfolgingsplan/lps.write"


def decode(grant: str, signer: LocalKeySigner) -> dict:
    return jwt.decode(
        grant, signer.public_jwk(), algorithms=[signer.algorithm], audience=AUD, options={"verify_iat": True}
    )


def test_minimal_grant_has_exactly_the_required_claims(signer):
    builder = GrantBuilder(SigningKeys(signer), GrantClaims(audience=AUD, client_id=CLIENT, scopes=(SCOPE,)))
    now = time.time()
    grant = builder.build(now)
    assert jwt.get_unverified_header(grant) == {"alg": "RS256", "kid": "test-key-1"}
    claims = decode(grant, signer)
    assert set(claims) == {"aud", "iss", "scope", "iat", "exp", "jti"}
    assert claims["aud"] == AUD and claims["iss"] == CLIENT and claims["scope"] == SCOPE
    assert claims["iat"] == int(now) and claims["exp"] == int(now) + 60


def test_every_build_is_a_new_grant(signer):
    builder = GrantBuilder(SigningKeys(signer), GrantClaims(audience=AUD, client_id=CLIENT, scopes=(SCOPE,)))
    now = time.time()
    jtis = {jwt.get_unverified_claims(builder.build(now))["jti"] for _ in range(50)}
    assert len(jtis) == 50


def test_optional_claims_are_sent_when_set(signer):
    details = [systemuser_authorization("310539759", external_ref="ref-1")]
    claims = GrantClaims(
        audience=AUD,
        client_id=CLIENT,
        scopes=("a:one", "a:two"),
        resource=("https://api.example.no",),
        authorization_details=tuple(details),
        pid="01017012345",
        lifetime=120,
    )
    grant = GrantBuilder(SigningKeys(signer), claims).build(time.time())
    decoded = jwt.decode(grant, signer.public_jwk(), algorithms=["RS256"], audience=AUD, options={"verify_aud": True})
    assert decoded["scope"] == "a:one a:two"
    assert "consumer_org" not in decoded
    assert decoded["resource"] == ["https://api.example.no"]
    assert decoded["authorization_details"] == [
        {
            "type": "urn:altinn:systemuser",
            "systemuser_org": {"authority": "iso6523-actorid-upis", "ID": "0192:310539759"},
            "externalRef": "ref-1",
        }
    ]
    assert decoded["pid"] == "01017012345"
    assert decoded["exp"] - decoded["iat"] == 120


def test_consumer_org_is_sent_when_set(signer):
    claims = GrantClaims(audience=AUD, client_id=CLIENT, scopes=(SCOPE,), consumer_org="310539759")
    assert decode(GrantBuilder(SigningKeys(signer), claims).build(time.time()), signer)["consumer_org"] == "310539759"


def test_a_delegation_and_a_system_user_in_one_grant_is_a_configuration_error():
    with pytest.raises(ConfigurationError) as caught:
        GrantClaims(
            audience=AUD,
            client_id=CLIENT,
            scopes=(SCOPE,),
            consumer_org="310539759",
            authorization_details=(systemuser_authorization("313990265"),),
        )
    assert caught.value.field == "consumer_org"
    assert "system user" in caught.value.problem


def test_x5c_header_is_an_array_and_has_no_kid(rsa_key, certificate_chain):
    from cryptography.hazmat.primitives.serialization import Encoding

    chain, _ = certificate_chain
    pem = b"".join(cert.public_bytes(Encoding.PEM) for cert in chain)
    signer = LocalKeySigner(rsa_key, certificate_chain=pem, algorithm="RS512")
    grant = GrantBuilder(SigningKeys(signer), GrantClaims(audience=AUD, client_id=CLIENT, scopes=(SCOPE,))).build(
        time.time()
    )
    header = jwt.get_unverified_header(grant)
    assert set(header) == {"alg", "x5c"} and header["alg"] == "RS512"
    assert isinstance(header["x5c"], list) and len(header["x5c"]) == 3
    assert jwt.decode(grant, signer.public_jwk(), algorithms=["RS512"], audience=AUD)["iss"] == CLIENT


def test_a_signer_without_kid_or_x5c_is_refused(rsa_key):
    with pytest.raises(ConfigurationError) as raised:
        GrantBuilder(SigningKeys(LocalKeySigner(rsa_key)), GrantClaims(audience=AUD, client_id=CLIENT, scopes=(SCOPE,)))
    assert raised.value.field == "kid"


@pytest.mark.parametrize("lifetime", [0, -1, 121, 3600, 1.5, True])
def test_grant_lifetime_outside_1_to_120_is_refused(lifetime):
    with pytest.raises(ConfigurationError) as raised:
        GrantClaims(audience=AUD, client_id=CLIENT, scopes=(SCOPE,), lifetime=lifetime)
    assert raised.value.field == "grant_lifetime"


class BrokenSigner(LocalKeySigner):
    def sign(self, signing_input: bytes) -> bytes:
        raise RuntimeError("HSM offline")


def test_an_untyped_signer_failure_becomes_a_signing_error(rsa_key):
    builder = GrantBuilder(
        SigningKeys(BrokenSigner(rsa_key, kid="k")), GrantClaims(audience=AUD, client_id=CLIENT, scopes=(SCOPE,))
    )
    with pytest.raises(SigningError, match="RuntimeError: HSM offline") as raised:
        builder.build(time.time())
    assert raised.value.backend == "local"
    assert isinstance(raised.value.__cause__, RuntimeError)
