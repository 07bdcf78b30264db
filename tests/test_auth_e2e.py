"""MaskinportenAuth end to end: real HTTP to the emulator and to a protected API, tokens verified independently."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
import requests
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, pkcs12
from jose import jwt

from maskinporten_auth import (
    ClockSkewError,
    DelegationError,
    Environment,
    InvalidGrantError,
    InvalidScopeError,
    LocalKeySigner,
    MaskinportenAuth,
    RetryPolicy,
)
from maskinporten_auth.testing import Fault, MaskinportenEmulator
from maskinporten_auth.testing.protected_api import ProtectedApi

SCOPE = "nav:oppfolgingsplan/lps.write"
SUPPLIER = "313042995"
CUSTOMER = "310539759"
STRANGER = "313990265"


@pytest.fixture
def client_id(maskinporten_emulator: MaskinportenEmulator, signer: LocalKeySigner) -> str:
    client_id = str(uuid.uuid4())
    maskinporten_emulator.register_client(
        client_id, orgno=SUPPLIER, scopes=[SCOPE], keys={signer.kid: signer.public_jwk()}
    )
    maskinporten_emulator.delegate(CUSTOMER, SUPPLIER, SCOPE)
    return client_id


@pytest.fixture
def auth(maskinporten_emulator, signer, client_id) -> MaskinportenAuth:
    return MaskinportenAuth(
        client_id=client_id,
        scopes=SCOPE,
        signer=signer,
        environment=maskinporten_emulator.environment,
        consumer_org=CUSTOMER,
    )


@pytest.fixture
def api(maskinporten_emulator) -> Iterator[ProtectedApi]:
    with ProtectedApi(lambda: maskinporten_emulator.jwks, issuer=maskinporten_emulator.issuer, scope=SCOPE) as api:
        yield api


def verified_claims(token: str, emulator: MaskinportenEmulator) -> dict:
    return jwt.decode(token, emulator.jwks, algorithms=["RS256"], options={"verify_aud": False})


def test_token_for_a_customer_has_consumer_and_supplier(auth, maskinporten_emulator, client_id):
    claims = verified_claims(auth.get_token(), maskinporten_emulator)
    assert claims["consumer"] == {"authority": "iso6523-actorid-upis", "ID": f"0192:{CUSTOMER}"}
    assert claims["supplier"] == {"authority": "iso6523-actorid-upis", "ID": f"0192:{SUPPLIER}"}
    assert claims["client_id"] == client_id
    assert claims["scope"] == SCOPE
    grant = maskinporten_emulator.grants[0]
    assert grant.claims["consumer_org"] == CUSTOMER
    assert grant.claims["aud"] == maskinporten_emulator.issuer


def test_httpx_sync_sends_the_token_and_reuses_it(auth, api, maskinporten_emulator):
    with httpx.Client(auth=auth) as client:
        first = client.post(f"{api.url}/plan", json={"n": 1})
        second = client.post(f"{api.url}/plan", json={"n": 2})
    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json()["consumer"]["ID"] == f"0192:{CUSTOMER}"
    assert maskinporten_emulator.tokens_issued == 1
    assert api.calls[0].token == api.calls[1].token


@pytest.mark.asyncio
async def test_httpx_async_sends_the_token_and_reuses_it(auth, api, maskinporten_emulator):
    async with httpx.AsyncClient(auth=auth) as client:
        responses = [await client.post(f"{api.url}/plan", json={"n": n}) for n in range(3)]
    assert [r.status_code for r in responses] == [201, 201, 201]
    assert maskinporten_emulator.tokens_issued == 1


def test_requests_sends_the_token_and_reuses_it(auth, api, maskinporten_emulator):
    with requests.Session() as session:
        responses = [session.post(f"{api.url}/plan", json={"n": n}, auth=auth, timeout=10) for n in range(3)]
    assert [r.status_code for r in responses] == [201, 201, 201]
    assert responses[0].json()["supplier"]["ID"] == f"0192:{SUPPLIER}"
    assert maskinporten_emulator.tokens_issued == 1


def test_one_auth_object_serves_all_three_clients_with_one_token(auth, api, maskinporten_emulator):
    assert httpx.get(f"{api.url}/a", auth=auth).status_code == 200
    assert requests.get(f"{api.url}/b", auth=auth, timeout=10).status_code == 200

    async def get() -> int:
        async with httpx.AsyncClient(auth=auth) as client:
            return (await client.get(f"{api.url}/c")).status_code

    assert asyncio.run(get()) == 200
    assert maskinporten_emulator.tokens_issued == 1


@pytest.mark.asyncio
async def test_300_concurrent_async_requests_on_a_cold_cache_make_one_grant(auth, api, maskinporten_emulator):
    maskinporten_emulator.inject_fault(Fault.slow(0.3))  # keep the first fetch in flight while the rest arrive
    limits = httpx.Limits(max_connections=50)
    async with httpx.AsyncClient(auth=auth, limits=limits, timeout=30) as client:
        responses = await asyncio.gather(*(client.get(f"{api.url}/r/{n}") for n in range(300)))
    assert all(r.status_code == 200 for r in responses)
    assert len(maskinporten_emulator.grants) == 1
    assert len({call.token for call in api.calls}) == 1


def test_32_threads_on_a_cold_cache_make_one_grant(auth, maskinporten_emulator):
    maskinporten_emulator.inject_fault(Fault.slow(0.3))
    barrier = threading.Barrier(32)
    tokens: list[str] = []

    def worker() -> None:
        barrier.wait()
        tokens.append(auth.get_token())

    threads = [threading.Thread(target=worker) for _ in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(tokens) == 32
    assert len(set(tokens)) == 1
    assert len(maskinporten_emulator.grants) == 1


def test_threads_and_tasks_on_several_event_loops_share_one_fetch(auth, maskinporten_emulator):
    maskinporten_emulator.inject_fault(Fault.slow(0.3))
    tokens: list[str] = []

    def loop_worker() -> None:
        async def many() -> list[str]:
            return list(await asyncio.gather(*(auth.aget_token() for _ in range(20))))

        tokens.extend(asyncio.run(many()))

    threads = [threading.Thread(target=loop_worker) for _ in range(4)]
    threads += [threading.Thread(target=lambda: tokens.append(auth.get_token())) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(tokens) == 84
    assert len(set(tokens)) == 1
    assert len(maskinporten_emulator.grants) == 1


def test_httpx_sync_401_refreshes_once_and_resends(auth, api, maskinporten_emulator):
    old = auth.get_token()
    api.revoke(old)
    response = httpx.post(f"{api.url}/plan", json={"n": 1}, auth=auth)
    assert response.status_code == 201
    assert [call.status for call in api.calls] == [401, 201]
    assert api.calls[1].body == api.calls[0].body
    assert maskinporten_emulator.tokens_issued == 2


@pytest.mark.asyncio
async def test_httpx_async_burst_of_401s_refreshes_once(auth, api, maskinporten_emulator):
    api.revoke(await auth.aget_token())
    async with httpx.AsyncClient(auth=auth) as client:
        responses = await asyncio.gather(*(client.post(f"{api.url}/plan", content=b"x") for _ in range(20)))
    assert all(r.status_code == 201 for r in responses)
    assert maskinporten_emulator.tokens_issued == 2


def test_requests_401_refreshes_once_and_resends(auth, api, maskinporten_emulator):
    api.revoke(auth.get_token())
    response = requests.post(f"{api.url}/plan", data=b"plan", auth=auth, timeout=10)
    assert response.status_code == 201
    assert [r.status_code for r in response.history] == [401]
    assert [call.status for call in api.calls] == [401, 201]
    assert api.calls[1].body == b"plan"
    assert maskinporten_emulator.tokens_issued == 2


def test_a_second_401_is_returned_not_retried_again(auth, api, maskinporten_emulator):
    real_revoke = api.revoke
    api.revoke(auth.get_token())
    # Revoke every token the API sees: the resend gets 401 too, and that 401 comes back to the caller.
    original_verify = api._verify

    def revoke_all(authorization):
        if authorization:
            real_revoke(authorization.removeprefix("Bearer "))
        return original_verify(authorization)

    api._verify = revoke_all
    response = httpx.get(f"{api.url}/x", auth=auth)
    assert response.status_code == 401
    assert len(api.calls) == 2
    assert maskinporten_emulator.tokens_issued == 2


def test_httpx_streamed_body_is_not_replayed_on_401(auth, api, maskinporten_emulator):
    api.revoke(auth.get_token())

    def stream() -> Iterator[bytes]:
        yield b"part one, "
        yield b"part two"

    response = httpx.post(f"{api.url}/plan", content=stream(), auth=auth)
    assert response.status_code == 401
    assert len(api.calls) == 1
    assert maskinporten_emulator.tokens_issued == 1


def test_requests_streamed_body_is_not_replayed_on_401(auth, api, maskinporten_emulator):
    api.revoke(auth.get_token())
    response = requests.post(f"{api.url}/plan", data=iter([b"a", b"b"]), auth=auth, timeout=10)
    assert response.status_code == 401
    assert len(api.calls) == 1
    assert maskinporten_emulator.tokens_issued == 1


def test_a_4_second_token_is_refreshed_without_a_failed_request(maskinporten_emulator, signer, client_id, api):
    maskinporten_emulator.token_lifetime = 4
    auth = MaskinportenAuth(
        client_id=client_id, scopes=SCOPE, signer=signer, environment=maskinporten_emulator.environment
    )
    statuses: list[int] = []
    deadline = time.monotonic() + 10
    with httpx.Client(auth=auth) as client:
        while time.monotonic() < deadline:
            statuses.append(client.get(f"{api.url}/poll").status_code)
            time.sleep(0.02)
    assert set(statuses) == {200}
    assert maskinporten_emulator.tokens_issued >= 3  # 10 s of 4-second tokens, refreshed before expiry
    assert maskinporten_emulator.reused_jtis == []


def test_with_consumer_org_shares_the_signer_and_cache(auth, maskinporten_emulator):
    maskinporten_emulator.delegate(STRANGER, SUPPLIER, SCOPE)
    other = auth.with_consumer_org(STRANGER)
    assert other.cache is auth.cache
    assert other.signer is auth.signer
    first, second = auth.get_token(), other.get_token()
    assert first != second
    assert verified_claims(second, maskinporten_emulator)["consumer"]["ID"] == f"0192:{STRANGER}"
    assert auth.get_token() == first
    assert maskinporten_emulator.tokens_issued == 2


def test_customer_without_delegation_is_a_delegation_error_with_hint(auth, maskinporten_emulator):
    with pytest.raises(DelegationError) as raised:
        auth.with_consumer_org(STRANGER).get_token()
    error = raised.value
    assert (error.status, error.error, error.code) == (403, "forbidden", "MP-251")
    assert STRANGER in error.description
    assert "delegate" in error.hint
    assert error.trace_id
    assert len(maskinporten_emulator.grants) == 1  # a 403 is final: no retry


def test_unregistered_scope_is_an_invalid_scope_error(maskinporten_emulator, signer, client_id):
    auth = MaskinportenAuth(
        client_id=client_id, scopes="nav:other", signer=signer, environment=maskinporten_emulator.environment
    )
    with pytest.raises(InvalidScopeError) as raised:
        auth.get_token()
    assert raised.value.code == "MP-200"
    assert "Samarbeidsportalen" in raised.value.hint


def test_unknown_kid_and_wrong_key_are_invalid_grant_errors(maskinporten_emulator, client_id, rsa_key, other_rsa_key):
    environment = maskinporten_emulator.environment
    unknown = MaskinportenAuth(client_id, SCOPE, LocalKeySigner(rsa_key, kid="nope"), environment)
    with pytest.raises(InvalidGrantError, match="Unknown key identifier") as raised:
        unknown.get_token()
    assert "kid" in raised.value.hint
    wrong = MaskinportenAuth(client_id, SCOPE, LocalKeySigner(other_rsa_key, kid="test-key-1"), environment)
    with pytest.raises(InvalidGrantError) as raised:
        wrong.get_token()
    assert raised.value.code == "MP-124"


def test_enterprise_certificate_from_pkcs12_is_sent_as_x5c(maskinporten_emulator, rsa_key, certificate_chain, tmp_path):
    chain, _ = certificate_chain
    leaf, intermediate, root = chain
    path = tmp_path / "virksomhet.p12"
    path.write_bytes(pkcs12.serialize_key_and_certificates(b"v", rsa_key, leaf, [intermediate, root], NoEncryption()))
    signer = LocalKeySigner.from_pkcs12_file(path, password=None)
    client_id = str(uuid.uuid4())
    maskinporten_emulator.register_client(client_id, orgno=SUPPLIER, scopes=[SCOPE], certificates=[root])
    auth = MaskinportenAuth(client_id, SCOPE, signer, maskinporten_emulator.environment)
    claims = verified_claims(auth.get_token(), maskinporten_emulator)
    assert claims["client_amr"] == "virksomhetssertifikat"
    header = maskinporten_emulator.grants[0].header
    assert "kid" not in header
    assert header["x5c"] == signer.x5c
    assert len(header["x5c"]) == 3
    assert leaf.public_bytes(Encoding.DER) != intermediate.public_bytes(Encoding.DER)


def test_resource_gives_an_audience_restricted_token(maskinporten_emulator, signer, client_id):
    auth = MaskinportenAuth(
        client_id, SCOPE, signer, maskinporten_emulator.environment, resource="https://api.example.no"
    )
    assert verified_claims(auth.get_token(), maskinporten_emulator)["aud"] == "https://api.example.no"


def test_server_error_is_retried_with_a_new_grant(auth, maskinporten_emulator):
    maskinporten_emulator.inject_fault(Fault.server_error(503), times=2)
    assert auth.get_token()
    assert len(maskinporten_emulator.grants) == 3
    assert maskinporten_emulator.reused_jtis == []


def test_a_skewed_clock_is_corrected_from_the_date_header(maskinporten_emulator, signer, client_id):
    maskinporten_emulator.clock_offset = 45.0
    auth = MaskinportenAuth(client_id, SCOPE, signer, maskinporten_emulator.environment)
    assert auth.get_token()
    assert len(maskinporten_emulator.grants) == 2
    rejected, accepted = maskinporten_emulator.grants
    assert abs(accepted.claims["iat"] - maskinporten_emulator.now()) <= 10
    assert rejected.claims["jti"] != accepted.claims["jti"]


def test_a_clock_that_cannot_be_corrected_is_a_clock_skew_error(maskinporten_emulator, signer, client_id):
    maskinporten_emulator.clock_offset = 45.0
    # A proxy that rewrites Date to local time hides the skew: the client cannot correct it and says so.
    maskinporten_emulator.inject_fault(headers={"Date": httpx_date(time.time())}, times=5)
    auth = MaskinportenAuth(client_id, SCOPE, signer, maskinporten_emulator.environment, retry=RetryPolicy(attempts=3))
    with pytest.raises(ClockSkewError) as raised:
        auth.get_token()
    assert raised.value.code == "MP-130"
    assert "NTP" in raised.value.hint


def httpx_date(seconds: float) -> str:
    from email.utils import formatdate

    return formatdate(seconds, usegmt=True)


def test_environment_discovery_from_the_issuer(maskinporten_emulator):
    discovered = Environment.discover(maskinporten_emulator.issuer)
    assert discovered.token_endpoint == maskinporten_emulator.environment.token_endpoint
    assert discovered.issuer == maskinporten_emulator.issuer


def test_repr_and_errors_hold_no_token(auth, maskinporten_emulator):
    token = auth.get_token()
    assert token not in repr(auth)
    assert "signer=LocalKeySigner(kid='test-key-1'" in repr(auth)


def test_an_unknown_client_is_told_which_environment_the_request_went_to(maskinporten_emulator, signer):
    auth = MaskinportenAuth("not-registered-here", SCOPE, signer, environment=maskinporten_emulator.environment)
    with pytest.raises(InvalidGrantError) as raised:
        auth.get_token()
    assert raised.value.code == "MP-100" or "client not found" in (raised.value.description or "").lower()
    hint = raised.value.hint or ""
    assert "test and prod are separate" in hint
    assert f"Maskinporten's emulator environment ({maskinporten_emulator.issuer})" in hint
