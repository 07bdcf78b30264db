"""Altinn 3 end to end: system users and consent (grants and tokens checked claim by claim), the emulator's MP-303
refusals per documented cause, and AltinnAuth's token exchange with httpx (sync and async) and requests.

Tokens are verified with python-jose against the emulator's JWKS, never only by the emulator itself.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import requests
from jose import jwt

from maskinporten_auth import (
    AltinnAuth,
    AltinnExchangeError,
    AuthorizationDetailsError,
    ConfigurationError,
    InvalidResponseError,
    MaskinportenAuth,
    MaskinportenError,
    RefreshPolicy,
    RetryPolicy,
    ServerError,
    SystemUserError,
    TokenEvent,
    TokenRequestError,
    consent_authorization,
)
from maskinporten_auth.cache import TokenCache
from maskinporten_auth.endpoints import error_from_response
from maskinporten_auth.mp_codes import hint_for
from maskinporten_auth.testing import Fault, MaskinportenEmulator
from maskinporten_auth.testing.protected_api import ProtectedApi

from .conftest import SUPPLIER, RecordingSigner
from .test_secrets import leaks, log_texts

INNTEKTSMELDING = "nav:inntektsmelding/lps.write"
CONSENT_SCOPE = "altinn:consentrequests.read"
CUSTOMER = "310539759"  # Baker AS, who approved a system user of the payroll system
AGENT = "313990265"  # an accounting firm with an agent system user for its clients
AGENT_CLIENT = "311654306"  # one of the accounting firm's clients
NOBODY = "314180313"  # a customer without a system user
SYSTEM = f"{SUPPLIER}_lonn"
PID = "01017012345"
PARTY = {"authority": "iso6523-actorid-upis", "ID": f"0192:{CUSTOMER}"}


@pytest.fixture
def vendor(maskinporten_emulator: MaskinportenEmulator, rsa_key: Any) -> str:
    """The payroll vendor's integration (owned by SUPPLIER), and the system user CUSTOMER approved for its system."""
    client_id = str(uuid.uuid4())
    maskinporten_emulator.register_client(
        client_id, orgno=SUPPLIER, scopes=[INNTEKTSMELDING, CONSENT_SCOPE], keys={"test-key-1": rsa_key.public_key()}
    )
    return client_id


@pytest.fixture
def systemuser_id(maskinporten_emulator: MaskinportenEmulator, vendor: str) -> str:
    return maskinporten_emulator.add_systemuser(CUSTOMER, vendor, system_id=SYSTEM)


@pytest.fixture
def make_auth(
    maskinporten_emulator: MaskinportenEmulator, recording_signer: RecordingSigner, vendor: str
) -> Callable[..., MaskinportenAuth]:
    def make(**options: Any) -> MaskinportenAuth:
        options.setdefault("signer", recording_signer)
        options.setdefault("environment", maskinporten_emulator.environment)
        options.setdefault("scopes", INNTEKTSMELDING)
        return MaskinportenAuth(vendor, **options)

    return make


@pytest.fixture
def altinn_api(maskinporten_emulator: MaskinportenEmulator) -> Iterator[ProtectedApi]:
    """An API hosted on Altinn: it takes Altinn tokens (issued by the emulated platform) with the scope."""
    issuer = f"{maskinporten_emulator.url}/authentication/api/v1/openid/"
    with ProtectedApi(lambda: maskinporten_emulator.jwks, issuer=issuer, scope=INNTEKTSMELDING) as api:
        yield api


def verified(emulator: MaskinportenEmulator, token: str, issuer: str | None = None) -> dict[str, Any]:
    """The token's claims, its RS256 signature checked with python-jose against the emulator's JWKS."""
    claims: dict[str, Any] = jwt.decode(
        token, emulator.jwks, algorithms=["RS256"], issuer=issuer or emulator.issuer, options={"verify_aud": False}
    )
    return claims


# System users: the grant and the token, claim by claim


def test_a_systemuser_grant_and_token_are_as_documented(
    make_auth, maskinporten_emulator, recording_signer, systemuser_id
):
    token = make_auth().with_systemuser(CUSTOMER).get_token()
    grant = jwt.get_unverified_claims(recording_signer.grants[-1])
    assert set(grant) == {"aud", "iss", "scope", "iat", "exp", "jti", "authorization_details"}
    assert grant["authorization_details"] == [{"type": "urn:altinn:systemuser", "systemuser_org": PARTY}]
    assert grant["scope"] == INNTEKTSMELDING

    claims = verified(maskinporten_emulator, token)
    (detail,) = claims["authorization_details"]
    assert detail == {
        "type": "urn:altinn:systemuser",
        "systemuser_org": PARTY,
        "systemuser_id": [systemuser_id],
        "system_id": SYSTEM,
    }
    assert claims["consumer"] == {"authority": "iso6523-actorid-upis", "ID": f"0192:{SUPPLIER}"}  # the vendor
    assert "supplier" not in claims and claims["scope"] == INNTEKTSMELDING


def test_external_ref_is_sent_only_when_given_and_picks_the_system_user(make_auth, maskinporten_emulator, vendor):
    plain = maskinporten_emulator.add_systemuser(CUSTOMER, vendor, system_id=SYSTEM)
    avdeling = maskinporten_emulator.add_systemuser(CUSTOMER, vendor, system_id=SYSTEM, external_ref="avdeling-2")
    auth = make_auth()
    with_ref = verified(maskinporten_emulator, auth.with_systemuser(CUSTOMER, external_ref="avdeling-2").get_token())
    assert maskinporten_emulator.grants[-1].claims["authorization_details"][0]["externalRef"] == "avdeling-2"
    without = verified(maskinporten_emulator, auth.with_systemuser(CUSTOMER).get_token())
    assert "externalRef" not in maskinporten_emulator.grants[-1].claims["authorization_details"][0]
    assert with_ref["authorization_details"][0]["systemuser_id"] == [avdeling]
    assert without["authorization_details"][0]["systemuser_id"] == [plain]


# MP-303, each documented cause, as typed errors with the cause's hint


def refused(call: Callable[[], object]) -> SystemUserError:
    with pytest.raises(SystemUserError) as raised:
        call()
    error = raised.value
    assert (error.status, error.error, error.code) == (400, "invalid_altinn_customer_configuration", "MP-303")
    assert error.refusal
    return error


def test_mp303_when_the_system_has_no_client_id(make_auth, maskinporten_emulator):
    maskinporten_emulator.add_systemuser(CUSTOMER, None, system_id=SYSTEM)
    error = refused(make_auth().with_systemuser(CUSTOMER).get_token)
    assert "ClientId" in (error.description or "") and "client_id" in (error.hint or "")


def test_mp303_when_the_system_lists_another_client_id(make_auth, maskinporten_emulator):
    maskinporten_emulator.add_systemuser(CUSTOMER, "another-integration", system_id=SYSTEM)
    assert "client_id" in (refused(make_auth().with_systemuser(CUSTOMER).get_token).hint or "")


def test_mp303_when_the_external_ref_is_missing(make_auth, maskinporten_emulator, vendor):
    maskinporten_emulator.add_systemuser(CUSTOMER, vendor, system_id=SYSTEM, external_ref="lonn-7")
    auth = make_auth()
    error = refused(auth.with_systemuser(CUSTOMER).get_token)
    assert "externalRef" in (error.description or "") and "external_ref=" in (error.hint or "")
    assert auth.with_systemuser(CUSTOMER, external_ref="lonn-7").get_token()


def test_mp303_when_an_agent_systemusers_client_is_named_instead_of_the_owner(make_auth, maskinporten_emulator, vendor):
    agent_user = maskinporten_emulator.add_systemuser(AGENT, vendor, system_id=SYSTEM, clients=[AGENT_CLIENT])
    auth = make_auth()
    error = refused(auth.with_systemuser(AGENT_CLIENT).get_token)
    assert "owner" in (error.description or "") and "agent" in (error.hint or "")
    token = verified(maskinporten_emulator, auth.with_systemuser(AGENT).get_token())
    assert token["authorization_details"][0]["systemuser_id"] == [agent_user]


def test_mp303_when_the_vendor_names_its_own_organisation(make_auth, systemuser_id):
    error = refused(make_auth().with_systemuser(SUPPLIER).get_token)
    assert "own organisation" in (error.description or "") and "not your own" in (error.hint or "")


def test_mp303_without_a_system_user_lists_every_cause_and_is_remembered(make_auth, maskinporten_emulator):
    auth = make_auth().with_systemuser(NOBODY)
    error = refused(auth.get_token)
    assert all(cause in (error.hint or "") for cause in ("(1)", "(2)", "(3)", "approved"))
    requests_before = maskinporten_emulator.token_requests
    readiness = auth.check()
    assert not readiness and readiness.code == "MP-303"
    assert maskinporten_emulator.token_requests == requests_before  # remembered: not asked again


def test_an_unknown_authorization_details_type_is_a_typed_refusal(make_auth):
    auth = make_auth(authorization_details=[{"type": "urn:altinn:unknown"}])
    with pytest.raises(AuthorizationDetailsError) as raised:
        auth.get_token()
    assert raised.value.error == "invalid_authorization_details" and raised.value.refusal


@pytest.mark.parametrize(
    ("code", "error", "kind", "hint"),
    [
        ("MP-301", "invalid_authorization_details", AuthorizationDetailsError, "urn:altinn:consent"),
        ("MP-302", "invalid_authorization_details", AuthorizationDetailsError, "fields"),
        ("MP-303", "invalid_authorization_details", AuthorizationDetailsError, "iso6523-actorid-upis"),
        ("MP-303", "invalid_altinn_customer_configuration", SystemUserError, "(3)"),
    ],
)
def test_mp30x_answers_map_to_typed_errors_with_hints(code, error, kind, hint):
    body = {"error": error, "error_description": "Nope (trace_id: abc)", "error_uri": f"https://x/errors/{code}"}
    typed = error_from_response(httpx.Response(400, json=body))
    assert type(typed) is kind and typed.code == code and typed.refusal and hint in (typed.hint or "")


def test_mp303_hints_follow_the_description():
    assert "client_id" in (hint_for("MP-303", "The system has no ClientId registered") or "")
    assert "external_ref=" in (hint_for("MP-303", "Missing externalRef") or "")
    assert "owns the system user" in (hint_for(None, "use the owner", "invalid_altinn_customer_configuration") or "")


# Consent


@pytest.mark.parametrize(
    ("party", "urn"),
    [
        (CUSTOMER, f"urn:altinn:organization:identifier-no:{CUSTOMER}"),
        (PID, f"urn:altinn:person:identifier-no:{PID}"),
        (f"urn:altinn:person:identifier-no:{PID}", f"urn:altinn:person:identifier-no:{PID}"),
    ],
)
def test_consent_authorization_is_as_documented(party, urn):
    consent = uuid.uuid4()
    assert consent_authorization(str(consent), party) == {"type": "urn:altinn:consent", "id": str(consent), "from": urn}
    assert consent_authorization(consent, party)["id"] == str(consent)


@pytest.mark.parametrize(
    ("consent_id", "party", "field"),
    [
        ("not-a-uuid", CUSTOMER, "consent_id"),
        (str(uuid.uuid4()), "123456789", "from_party"),
        (str(uuid.uuid4()), "urn:altinn:organization:identifier-no:12", "from_party"),
        (str(uuid.uuid4()), "urn:altinn:party:1", "from_party"),
        (str(uuid.uuid4()), "", "from_party"),
    ],
)
def test_bad_consent_input_fails_at_construction(make_auth, consent_id, party, field):
    with pytest.raises(ConfigurationError) as raised:
        make_auth(scopes=CONSENT_SCOPE).with_consent(consent_id, party)
    assert raised.value.field == field


def test_consent_tokens_are_cached_per_consent(make_auth, maskinporten_emulator, recording_signer):
    auth = make_auth(scopes=CONSENT_SCOPE)
    first, second = (maskinporten_emulator.add_consent(PID, SUPPLIER) for _ in range(2))
    token = auth.with_consent(first, PID).get_token()
    grant = jwt.get_unverified_claims(recording_signer.grants[-1])
    assert grant["authorization_details"] == [
        {"type": "urn:altinn:consent", "id": first, "from": f"urn:altinn:person:identifier-no:{PID}"}
    ]
    assert verified(maskinporten_emulator, token)["authorization_details"][0]["id"] == first
    assert auth.with_consent(first, PID).get_token() == token  # a new view, the same cache entry
    assert auth.with_consent(second, PID).get_token() != token
    assert auth.with_consent(first, PID).with_consent(second, PID).cache_key == auth.with_consent(second, PID).cache_key
    assert maskinporten_emulator.tokens_issued == 2


def test_a_consent_token_carries_the_consent_as_maskinporten_issues_it(make_auth, maskinporten_emulator):
    valid_to = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=30)
    rights = [{"action": ["consent"], "resource": [{"type": "urn:altinn:resource", "value": "samtykke-test"}]}]
    consent = maskinporten_emulator.add_consent(PID, SUPPLIER, valid_to=valid_to, rights=rights)
    token = make_auth(scopes=CONSENT_SCOPE).with_consent(consent, PID).get_token()
    (detail,) = verified(maskinporten_emulator, token)["authorization_details"]
    assert detail["id"] == consent and detail["from"] == f"urn:altinn:person:identifier-no:{PID}"
    assert detail["to"] == {"authority": "iso6523-actorid-upis", "ID": f"0192:{SUPPLIER}"}
    assert datetime.datetime.fromisoformat(detail["validTo"]) == valid_to
    assert datetime.datetime.fromisoformat(detail["consented"]) <= datetime.datetime.now(datetime.timezone.utc)
    assert detail["consentRights"] == rights


@pytest.mark.parametrize(
    ("case", "description"),
    [
        ("unknown", "was not found"),
        ("expired", "expired at"),
        ("another party", "is not from 'urn:altinn:person:identifier-no:02017012345'"),
        ("another consumer", f"was not given to {SUPPLIER}"),
    ],
)
def test_a_consent_that_is_not_approved_is_refused(make_auth, maskinporten_emulator, case, description):
    now = datetime.datetime.now(datetime.timezone.utc)
    consent = maskinporten_emulator.add_consent(
        PID,
        CUSTOMER if case == "another consumer" else SUPPLIER,
        valid_to=now - datetime.timedelta(seconds=1) if case == "expired" else None,
    )
    asked = str(uuid.uuid4()) if case == "unknown" else consent
    party = "02017012345" if case == "another party" else PID
    with pytest.raises(AuthorizationDetailsError) as raised:
        make_auth(scopes=CONSENT_SCOPE).with_consent(asked, party).get_token()
    assert (raised.value.code, raised.value.error) == ("MP-303", "invalid_authorization_details")
    assert description in raised.value.description
    assert maskinporten_emulator.tokens_issued == 0


def test_the_emulator_takes_only_valid_consents(maskinporten_emulator):
    with pytest.raises(ValueError, match="organisation number"):
        maskinporten_emulator.add_consent(PID, "123456789")
    with pytest.raises(ValueError, match="aware"):
        maskinporten_emulator.add_consent(PID, SUPPLIER, valid_to=datetime.datetime(2030, 1, 1))
    with pytest.raises(ValueError, match="from_party"):
        maskinporten_emulator.add_consent("12345", SUPPLIER)


# AltinnAuth: the exchange


def test_altinn_auth_calls_an_altinn_api_with_every_client(make_auth, maskinporten_emulator, altinn_api, systemuser_id):
    auth = AltinnAuth(make_auth().with_systemuser(CUSTOMER), environment=maskinporten_emulator.url)
    url = f"{altinn_api.url}/inntektsmelding"
    with httpx.Client(auth=auth) as client:
        assert client.post(url, json={"aar": 2026}).status_code == 201
    assert requests.post(url, json={"aar": 2026}, auth=auth, timeout=10).status_code == 201

    async def call() -> int:
        async with httpx.AsyncClient(auth=auth) as client:
            return (await client.get(url)).status_code

    assert asyncio.run(call()) == 200
    assert (maskinporten_emulator.tokens_issued, maskinporten_emulator.exchanges) == (1, 1)
    (token,) = {call.token for call in altinn_api.calls}
    assert token is not None
    claims = verified(maskinporten_emulator, token, issuer=f"{maskinporten_emulator.url}/authentication/api/v1/openid/")
    assert claims["urn:altinn:orgNumber"] == SUPPLIER
    assert claims["authorization_details"][0]["systemuser_id"] == [systemuser_id]
    assert claims["exp"] - claims["iat"] == maskinporten_emulator.altinn_token_lifetime


def test_one_exchange_per_lifetime_under_a_herd_of_threads_and_tasks(make_auth, maskinporten_emulator, systemuser_id):
    auth = AltinnAuth(make_auth().with_systemuser(CUSTOMER), environment=maskinporten_emulator.url)
    start = threading.Barrier(33)
    tokens: list[str] = []

    def thread() -> None:
        start.wait()
        tokens.append(auth.get_token())

    async def tasks() -> list[str]:
        await asyncio.to_thread(start.wait)
        return await asyncio.gather(*(auth.aget_token() for _ in range(32)))

    threads = [threading.Thread(target=thread) for _ in range(32)]
    for worker in threads:
        worker.start()
    tokens += asyncio.run(tasks())
    for worker in threads:
        worker.join()
    assert len(tokens) == 64 and len(set(tokens)) == 1
    assert (maskinporten_emulator.tokens_issued, maskinporten_emulator.exchanges) == (1, 1)


def test_the_altinn_token_is_refreshed_before_it_expires(make_auth, maskinporten_emulator, systemuser_id):
    maskinporten_emulator.altinn_token_lifetime = 6
    refresh = RefreshPolicy(refresh_window=(0.4, 0.4), min_margin=1.0)
    auth = AltinnAuth(make_auth(refresh=refresh).with_systemuser(CUSTOMER), environment=maskinporten_emulator.url)
    seen: dict[str, float] = {}
    deadline = time.monotonic() + 7.5
    while time.monotonic() < deadline:
        token = auth.get_token()
        expires = jwt.get_unverified_claims(token)["exp"]
        assert expires > time.time(), "an expired Altinn token was handed out"
        seen.setdefault(token, expires)
        time.sleep(0.05)
    assert len(seen) >= 2
    first, second = list(seen.values())[:2]
    assert second > first  # the successor came before the first expired (checked on every call above)
    assert maskinporten_emulator.exchanges == len(seen)


@pytest.mark.parametrize("client", ["httpx", "httpx-async", "requests"])
def test_a_401_from_the_api_renews_both_tokens_once(
    make_auth, maskinporten_emulator, altinn_api, systemuser_id, client
):
    auth = AltinnAuth(make_auth().with_systemuser(CUSTOMER), environment=maskinporten_emulator.url)
    url = f"{altinn_api.url}/inntektsmelding"
    stale = auth.get_token()
    altinn_api.revoke(stale)
    if client == "httpx":
        status = httpx.post(url, content=b"{}", auth=auth).status_code
    elif client == "requests":
        status = requests.post(url, data=b"{}", auth=auth, timeout=10).status_code
    else:

        async def call() -> int:
            async with httpx.AsyncClient(auth=auth) as http:
                return (await http.post(url, content=b"{}")).status_code

        status = asyncio.run(call())
    assert status == 201
    assert [call.status for call in altinn_api.calls] == [401, 201]
    assert altinn_api.calls[-1].token != stale
    assert (maskinporten_emulator.tokens_issued, maskinporten_emulator.exchanges) == (2, 2)


def test_a_burst_of_401s_for_one_token_renews_it_once(make_auth, maskinporten_emulator, altinn_api, systemuser_id):
    auth = AltinnAuth(make_auth().with_systemuser(CUSTOMER), environment=maskinporten_emulator.url)
    altinn_api.revoke(auth.get_token())

    def call(_: int) -> int:
        return httpx.get(f"{altinn_api.url}/x", auth=auth).status_code

    threads: list[int] = []
    workers = [threading.Thread(target=lambda i=i: threads.append(call(i))) for i in range(16)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert threads == [200] * 16
    assert (maskinporten_emulator.tokens_issued, maskinporten_emulator.exchanges) == (2, 2)


class RefetchedAtOnce(TokenCache):
    """A shared store in which another process fetches a dropped token again at once."""

    refetch: Callable[[], object] | None = None

    def invalidate(self, key: str, value: str) -> bool:
        dropped = super().invalidate(key, value)
        if dropped and self.refetch is not None:
            refetch, self.refetch = self.refetch, None
            refetch()
        return dropped


def test_the_caller_that_drops_a_rejected_altinn_token_renews_the_maskinporten_token_behind_it(
    make_auth, maskinporten_emulator, altinn_api, systemuser_id
):
    store = RefetchedAtOnce()
    auth = AltinnAuth(make_auth(cache=store).with_systemuser(CUSTOMER), environment=maskinporten_emulator.url)
    other_process = AltinnAuth(make_auth(cache=store).with_systemuser(CUSTOMER), environment=maskinporten_emulator.url)
    maskinporten_token = auth.auth.get_token()
    altinn_api.revoke(auth.get_token())
    store.refetch = other_process.get_token  # between the drop and anything else this caller does

    assert httpx.get(f"{altinn_api.url}/x", auth=auth).status_code == 200
    assert auth.auth.get_token() != maskinporten_token
    assert (maskinporten_emulator.tokens_issued, maskinporten_emulator.exchanges) == (2, 2)


def test_exchange_failures_are_retried_then_typed(make_auth, maskinporten_emulator, systemuser_id):
    view = make_auth().with_systemuser(CUSTOMER)
    fast = RetryPolicy(attempts=4, backoff=0.01)
    for fault in (Fault.server_error(503), Fault.reset_connection(), Fault.rate_limited(retry_after=0)):
        maskinporten_emulator.inject_exchange_fault(fault)
    assert AltinnAuth(view, environment=maskinporten_emulator.url, retry=fast).get_token()
    assert maskinporten_emulator.exchanges == 1

    view.cache.clear()  # an AltinnAuth over the same view shares the family's store: start cold
    maskinporten_emulator.inject_exchange_fault(Fault.server_error(502), times=2)
    with pytest.raises(ServerError) as raised:
        AltinnAuth(view, environment=maskinporten_emulator.url, retry=RetryPolicy(attempts=2, backoff=0.01)).get_token()
    assert raised.value.status == 502 and "Altinn" in str(raised.value)

    maskinporten_emulator.inject_exchange_fault(Fault(status=200, body="not a token"), times=4)
    view.cache.clear()
    with pytest.raises(InvalidResponseError):
        AltinnAuth(view, environment=maskinporten_emulator.url, retry=fast).get_token()


def test_a_hostile_exchange_cannot_hang_bloat_or_redirect_us(make_auth, maskinporten_emulator, systemuser_id):
    view = make_auth().with_systemuser(CUSTOMER)
    once = RetryPolicy(attempts=1, deadline=4.0, timeout=1.0)

    def exchange_fails_with(fault: Fault) -> tuple[Exception, float]:
        view.cache.clear()
        maskinporten_emulator.inject_exchange_fault(fault)
        started = time.monotonic()
        with pytest.raises(TokenRequestError) as raised:
            AltinnAuth(view, environment=maskinporten_emulator.url, retry=once).get_token()
        return raised.value, time.monotonic() - started

    error, took = exchange_fails_with(Fault.drip_feed(1.0))
    assert took < 1.0 + 1.5, f"a drip held the exchange for {took:.1f} s"
    error, took = exchange_fails_with(Fault.gzip_bomb(64 << 20))
    assert isinstance(error, InvalidResponseError) and "asked for identity" in str(error)
    error, _ = exchange_fails_with(Fault.redirect("http://127.0.0.1:9/elsewhere"))
    assert error.status == 307
    assert maskinporten_emulator.exchanges == 0


@pytest.mark.parametrize("quoted", [False, True], ids=["text", "json-string"])
def test_the_exchange_body_is_read_bare_or_as_a_json_string(make_auth, maskinporten_emulator, systemuser_id, quoted):
    altinn_token = jwt.encode({"exp": int(time.time()) + 600, "scope": INNTEKTSMELDING}, "k" * 32, algorithm="HS256")
    body, kind = (json.dumps(altinn_token), "application/json") if quoted else (altinn_token, "text/plain")
    maskinporten_emulator.inject_exchange_fault(Fault(status=200, body=body, content_type=kind))
    auth = AltinnAuth(make_auth().with_systemuser(CUSTOMER), environment=maskinporten_emulator.url)
    assert auth.get_token() == altinn_token
    cached = auth.cache.get(auth.cache_key)
    assert cached is not None and 590 < cached.expires_at - time.monotonic() <= 600


def test_a_401_from_the_exchange_renews_the_maskinporten_token_once(make_auth, maskinporten_emulator, systemuser_id):
    view = make_auth().with_systemuser(CUSTOMER)
    problem = {"title": "Unauthorized", "status": 401, "detail": "Invalid token"}
    maskinporten_emulator.inject_exchange_fault(Fault(status=401, body=problem))
    assert AltinnAuth(view, environment=maskinporten_emulator.url).get_token()
    assert maskinporten_emulator.tokens_issued == 2

    maskinporten_emulator.inject_exchange_fault(Fault(status=401, body=problem), times=2)
    with pytest.raises(AltinnExchangeError) as raised:
        AltinnAuth(view, environment=maskinporten_emulator.url, test=True).get_token()
    error = raised.value
    assert (error.status, error.description) == (401, "Invalid token") and "tt02" in (error.hint or "")
    # The cached Maskinporten token is the renewal of one the exchange rejected: renewing it again would not help.
    assert maskinporten_emulator.tokens_issued == 2 and not error.retryable


def test_a_maskinporten_refusal_reaches_the_caller_typed_and_remembered(make_auth, maskinporten_emulator):
    auth = AltinnAuth(make_auth().with_systemuser(NOBODY), environment=maskinporten_emulator.url)
    refused(auth.get_token)
    requests_before = maskinporten_emulator.token_requests
    with pytest.raises(SystemUserError):
        asyncio.run(auth.aget_token())
    assert not auth.check() and maskinporten_emulator.token_requests == requests_before
    assert maskinporten_emulator.exchanges == 0
    maskinporten_emulator.add_systemuser(NOBODY, auth.auth.client_id, system_id=SYSTEM)  # approved now
    assert asyncio.run(auth.acheck(fresh=True)) and maskinporten_emulator.exchanges == 1


def test_test_true_asks_for_the_test_organisation(make_auth, maskinporten_emulator, systemuser_id):
    auth = AltinnAuth(make_auth().with_systemuser(CUSTOMER), environment=maskinporten_emulator.url, test=True)
    assert auth.exchange_url.endswith("/authentication/api/v1/exchange/maskinporten?test=true")
    assert jwt.get_unverified_claims(auth.get_token())["urn:altinn:org"] == "ttd"


def test_the_exchange_is_served_by_the_family_it_wraps(make_auth, maskinporten_emulator):
    base = make_auth(max_in_flight=3)
    auth = AltinnAuth(base, environment=maskinporten_emulator.url)
    assert auth._provider is base._provider  # one store, refresh policy, worker pool and refusal memory
    assert auth._exchange.slots._initial_value == 3  # type: ignore[attr-defined]


def test_views_share_the_exchange_and_the_store(make_auth, maskinporten_emulator, vendor, systemuser_id):
    events: list[TokenEvent] = []
    maskinporten_emulator.add_systemuser(AGENT, vendor, system_id=SYSTEM)
    base = make_auth(on_event=events.append)
    family = AltinnAuth(base, environment=maskinporten_emulator.url)
    customer, agent = family.with_systemuser(CUSTOMER), family.with_systemuser(AGENT)
    assert customer._provider is agent._provider is family._provider and customer.cache_key != agent.cache_key
    assert customer.get_token() != agent.get_token()
    assert len(base.cache) == 4  # two Maskinporten and two Altinn tokens, in the family's one store
    fetched = [(event.source, event.systemuser_org) for event in events if event.kind == "fetched"]
    assert sorted(fetched) == sorted(
        [("maskinporten", CUSTOMER), ("altinn", CUSTOMER), ("maskinporten", AGENT), ("altinn", AGENT)]
    )
    assert customer.get_token() == customer.get_token()
    assert customer.auth.systemuser_org == CUSTOMER


def test_environments_and_configuration(make_auth, signer):
    prod_auth = MaskinportenAuth("client", INNTEKTSMELDING, signer, environment="prod")
    test_auth = MaskinportenAuth("client", INNTEKTSMELDING, signer, environment="test")
    assert AltinnAuth(test_auth).exchange_url == (
        "https://platform.tt02.altinn.no/authentication/api/v1/exchange/maskinporten"
    )
    assert AltinnAuth(prod_auth, "prod").exchange_url.startswith("https://platform.altinn.no/")
    for auth, environment in ((test_auth, "prod"), (prod_auth, "tt02")):
        with pytest.raises(ConfigurationError, match="environment"):
            AltinnAuth(auth, environment)
    for options, field in (
        ({"environment": "http://altinn.example"}, "environment"),
        ({"environment": "tt03"}, "environment"),
        ({"test": "yes"}, "test"),
        ({"retry": 3}, "retry"),
        ({"http_client": object()}, "http_client"),
    ):
        with pytest.raises(ConfigurationError) as raised:
            AltinnAuth(test_auth, **options)
        assert raised.value.field == field
    with pytest.raises(ConfigurationError) as raised:
        AltinnAuth("not an auth")  # type: ignore[arg-type]
    assert raised.value.field == "auth"


def test_no_maskinporten_or_altinn_token_in_logs_reprs_or_errors(
    make_auth, maskinporten_emulator, altinn_api, systemuser_id, caplog
):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="maskinporten_auth")
    wire: list[str] = []  # every Maskinporten and Altinn token, as it came off the wire

    def note(response: httpx.Response) -> None:
        response.read()
        if response.status_code == 200 and response.url.path == "/token":
            wire.append(response.json()["access_token"])
        elif response.status_code == 200:
            wire.append(response.text.strip('"'))

    hooks = {"response": [note]}
    events: list[TokenEvent] = []
    view = make_auth(on_event=events.append, http_client=httpx.Client(event_hooks=hooks)).with_systemuser(CUSTOMER)
    fast = RetryPolicy(attempts=2, backoff=0.01)
    auth = AltinnAuth(
        view, environment=maskinporten_emulator.url, retry=fast, http_client=httpx.Client(event_hooks=hooks)
    )
    errors: list[BaseException] = []
    altinn_api.revoke(auth.get_token())
    assert httpx.get(f"{altinn_api.url}/x", auth=auth).status_code == 200
    planted = secrets.token_urlsafe(96)  # a long random value where a token might go
    echoed = {"detail": f"Bearer {view.get_token()} rejected"}  # an exchange that quotes what it got
    for faults in (
        [Fault(status=200, body=planted)] * 2,
        [Fault(status=200, body=json.dumps(planted))] * 2,
        [Fault(status=401, body=echoed), Fault(status=403, body={"detail": f"no {planted} here"})],
    ):
        view.cache.clear()
        for fault in faults:
            maskinporten_emulator.inject_exchange_fault(fault)
        with pytest.raises(MaskinportenError) as raised:
            AltinnAuth(view, environment=maskinporten_emulator.url, retry=fast).get_token()
        errors.append(raised.value)
    assert isinstance(errors[-1], AltinnExchangeError) and errors[-1].description == "no <token> here"
    assert len(wire) >= 4  # two Maskinporten and two Altinn tokens at least (the first of each was rejected)
    tokens = [planted, *wire, *(segment for token in wire for segment in token.split(".")[1:])]
    texts = [
        *log_texts(caplog.records),
        *map(repr, (auth, view, auth.cache, auth._provider, auth._exchange, *events)),
        *(text for error in errors for text in (str(error), repr(error), repr(error.args))),
    ]
    assert {"maskinporten_auth", "httpx"} <= {record.name.split(".")[0] for record in caplog.records}
    assert leaks(texts, tokens) == []
