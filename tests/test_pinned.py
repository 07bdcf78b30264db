"""Behaviours of the token path pinned through public entry points, so that a rewrite of its modules keeps them.

Each test names the behaviour it guards. They count grants and requests at the emulator rather than time where
they can; where a token's lifetime matters, tokens are a few seconds long and the waits leave room for a busy
machine.
"""

from __future__ import annotations

import asyncio
import threading
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import requests
import requests.adapters
from jose import jwt

from maskinporten_auth import (
    AccessDeniedError,
    AltinnAuth,
    DelegationError,
    InvalidResponseError,
    MaskinportenAuth,
    NetworkError,
    RateLimitedError,
    RefreshPolicy,
    RetryPolicy,
    ServerError,
    SystemUserError,
)
from maskinporten_auth.cache import CachedToken, TokenCache
from maskinporten_auth.testing import Fault, MaskinportenEmulator
from maskinporten_auth.testing.protected_api import ProtectedApi

from .conftest import SCOPE, SUPPLIER

#: One attempt, no retry: a fault queued once is the answer the caller gets.
ONCE = RetryPolicy(attempts=1, deadline=10.0, timeout=5.0)
CUSTOMER = "310539759"
UNDELEGATED = "314180313"
INNTEKTSMELDING = "nav:inntektsmelding/lps.write"


def refusal(description: str) -> Fault:
    """A 403 ``access_denied`` answer with ``description`` and no MP code."""
    return Fault(status=403, body={"error": "access_denied", "error_description": description})


def cached(auth: MaskinportenAuth | AltinnAuth) -> CachedToken:
    """The token the view's store holds now, with its deadlines."""
    token = auth.cache.get(auth.cache_key)
    assert token is not None
    return token


def in_thread(call: Callable[[], Any], timeout: float = 20.0) -> Any:
    """Run ``call`` in a thread and return its result; fail if it has not finished within ``timeout``."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    assert outcome, f"the call did not finish within {timeout:.0f} s"
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0]


def sleep_until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.monotonic()))


@pytest.fixture(params=["sync", "async"])
def token_of(request: pytest.FixtureRequest) -> Callable[[MaskinportenAuth], str]:
    """Get a view's token as a thread does (``get_token``) or as a coroutine does (``aget_token``)."""
    if request.param == "sync":
        return lambda auth: auth.get_token()
    return lambda auth: asyncio.run(auth.aget_token())


# The bound on fetches in flight


def test_a_failed_fetch_frees_its_in_flight_slot(make_auth, maskinporten_emulator, token_of):
    auth = make_auth(max_in_flight=1, retry=ONCE, remember_refusals=0)
    maskinporten_emulator.inject_fault(Fault.server_error(500), times=3)
    for _ in range(3):
        with pytest.raises(ServerError):
            in_thread(lambda: token_of(auth))
    assert in_thread(lambda: token_of(auth))  # a slot leaked by each failure would leave none by now


# Refusal memory


def test_a_success_for_one_customer_does_not_forget_anothers_refusal(make_auth, maskinporten_emulator, token_of):
    maskinporten_emulator.delegate(CUSTOMER, SUPPLIER, SCOPE)
    auth = make_auth()
    refused = auth.with_consumer_org(UNDELEGATED)
    with pytest.raises(DelegationError):
        token_of(refused)
    assert token_of(auth.with_consumer_org(CUSTOMER))
    requests_before = maskinporten_emulator.token_requests
    with pytest.raises(DelegationError):
        token_of(refused)
    assert maskinporten_emulator.token_requests == requests_before


@pytest.mark.xfail(
    strict=True, reason="the classifier does not yet take invalid_altinn_customer_configuration for a refusal"
)
def test_a_system_user_not_set_up_without_an_mp_code_is_remembered_as_a_refusal(make_auth, maskinporten_emulator):
    answer = {"error": "invalid_altinn_customer_configuration", "error_description": "No system user found"}
    maskinporten_emulator.inject_fault(status=400, body=answer)
    auth = make_auth(retry=ONCE).with_systemuser(CUSTOMER)
    with pytest.raises(SystemUserError):
        auth.get_token()
    requests_before = maskinporten_emulator.token_requests
    with pytest.raises(SystemUserError):
        auth.get_token()
    assert maskinporten_emulator.token_requests == requests_before


# The still-valid token when a fetch fails

#: Tokens of 4 s: "must refresh" from 2 s (half the lifetime), still handed out after a failure until 3.5 s.
LATE_USE = RefreshPolicy(refresh_window=(0.4, 0.4), must_refresh_margin=0.5, min_margin=0.5)


def token_in_its_last_margin(make_auth, emulator: MaskinportenEmulator, **options: Any) -> tuple[MaskinportenAuth, str]:
    """A 4-s token fetched, then waited on until it is past "must refresh" but still usable after a failure."""
    emulator.set_scope_lifetime(SCOPE, 4)
    auth = make_auth(refresh=LATE_USE, retry=ONCE, **options)
    first = auth.get_token()
    sleep_until(cached(auth).must_refresh_at + 0.2)
    return auth, first


def test_a_failing_fetch_in_the_last_margin_hands_out_the_still_valid_token(make_auth, maskinporten_emulator, token_of):
    auth, first = token_in_its_last_margin(make_auth, maskinporten_emulator)
    maskinporten_emulator.inject_fault(Fault.server_error(500))
    assert token_of(auth) == first


def test_a_refusal_in_the_last_margin_hands_out_the_still_valid_token_and_is_remembered(
    make_auth, maskinporten_emulator, token_of
):
    auth, first = token_in_its_last_margin(make_auth, maskinporten_emulator)
    maskinporten_emulator.inject_fault(refusal("Consumer has not delegated access to the scope"))
    assert token_of(auth) == first
    requests_before = maskinporten_emulator.token_requests
    assert token_of(auth) == first  # the refusal is remembered, but this view's token is still valid
    assert maskinporten_emulator.token_requests == requests_before


# When a token ends


def test_a_tokens_lifetime_counts_from_before_its_request(make_auth, maskinporten_emulator):
    maskinporten_emulator.set_scope_lifetime(SCOPE, 10)
    auth = make_auth()
    maskinporten_emulator.inject_fault(Fault.slow(3.0))
    asked_at = time.monotonic()
    auth.get_token()
    assert cached(auth).expires_at <= asked_at + 10 + 1.0  # the 3 s the endpoint took are not added


def test_a_short_token_is_not_sent_within_min_margin_of_its_end(make_auth, maskinporten_emulator):
    maskinporten_emulator.set_scope_lifetime(SCOPE, 4)
    auth = make_auth(retry=ONCE)  # default policy: 10 % of 4 s is 0.4 s, but min_margin is 2 s
    auth.get_token()
    sleep_until(cached(auth).expires_at - 1.7)  # within min_margin of the end, long before the last 0.4 s
    maskinporten_emulator.inject_fault(Fault.server_error(500))
    with pytest.raises(ServerError):
        auth.get_token()


def test_a_failed_early_refresh_is_tried_again_before_the_must_refresh_point(make_auth, maskinporten_emulator):
    maskinporten_emulator.set_scope_lifetime(SCOPE, 8)
    # Refresh due at 2 s, must refresh at 6 s; a cooldown of 30 s would wait past that, so half the time left caps it.
    policy = RefreshPolicy(refresh_window=(0.25, 0.25), failure_cooldown=30.0)
    auth = make_auth(refresh=policy, retry=ONCE)
    first = auth.get_token()
    token = cached(auth)
    sleep_until(token.refresh_at + 0.1)
    maskinporten_emulator.inject_fault(Fault.server_error(500))
    assert auth.get_token() == first  # the early refresh failed; the token is still fresh enough
    failed_at = time.monotonic()
    sleep_until(max(failed_at + (token.must_refresh_at - failed_at) / 2 + 0.4, token.refresh_at + 2.5))
    assert time.monotonic() < token.must_refresh_at, "the test ran too slowly to tell"
    issued_before = maskinporten_emulator.tokens_issued
    auth.get_token()  # this caller starts the next early refresh (and waits for it: no background refresh)
    assert maskinporten_emulator.tokens_issued == issued_before + 1
    assert auth.get_token() != first


# A 401 from the API


class HeldAdapter(requests.adapters.HTTPAdapter):
    """Holds each answer from the API until ``release`` is set, as a slow network would (``hold`` turns it on)."""

    def __init__(self) -> None:
        super().__init__()
        self.hold = threading.Event()
        self.held = threading.Event()
        self.release = threading.Event()

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        response = super().send(request, *args, **kwargs)
        if self.hold.is_set():
            self.hold.clear()
            self.held.set()
            assert self.release.wait(20)
        return response


def test_a_late_401_for_a_replaced_token_with_requests_keeps_the_new_token(make_auth, maskinporten_emulator):
    auth = make_auth()
    with ProtectedApi(lambda: maskinporten_emulator.jwks, issuer=maskinporten_emulator.issuer, scope=SCOPE) as api:
        api.revoke(auth.get_token())
        slow, fast = requests.Session(), requests.Session()
        adapter = HeldAdapter()
        slow.mount("http://", adapter)
        adapter.hold.set()
        answers: list[requests.Response] = []
        late = threading.Thread(target=lambda: answers.append(slow.get(f"{api.url}/a", auth=auth, timeout=20)))
        late.start()
        assert adapter.held.wait(20)  # its 401 for the revoked token is on its way back
        assert fast.get(f"{api.url}/b", auth=auth, timeout=20).status_code == 200  # renewed once, resent
        adapter.release.set()
        late.join(20)
    assert [answer.status_code for answer in answers] == [200]  # resent with the renewed token, which was kept
    assert maskinporten_emulator.tokens_issued == 2


# The cache key


def test_two_families_of_one_client_with_INNTEKTSMELDINGs_do_not_share_a_token(maskinporten_emulator, rsa_key, signer):
    client_id = str(uuid.uuid4())
    maskinporten_emulator.register_client(
        client_id, orgno=SUPPLIER, scopes=[SCOPE, INNTEKTSMELDING], keys={"test-key-1": rsa_key.public_key()}
    )
    store = TokenCache()
    tokens = {
        scope: MaskinportenAuth(
            client_id, scope, signer, environment=maskinporten_emulator.environment, cache=store
        ).get_token()
        for scope in (SCOPE, INNTEKTSMELDING)
    }
    for scope, token in tokens.items():
        assert jwt.get_unverified_claims(token)["scope"] == scope
    assert maskinporten_emulator.tokens_issued == 2


# Classification


def test_a_403_saying_not_delegated_without_an_mp_code_is_a_delegation_error(make_auth, maskinporten_emulator):
    maskinporten_emulator.inject_fault(refusal("Consumer has not delegated access to the scope"))
    with pytest.raises(DelegationError):
        make_auth(retry=ONCE).with_consumer_org(CUSTOMER).get_token()
    maskinporten_emulator.inject_fault(refusal("Access denied"))
    with pytest.raises(AccessDeniedError) as denied:
        make_auth(retry=ONCE).with_consumer_org(CUSTOMER).get_token()
    assert not isinstance(denied.value, DelegationError)


# Altinn's token exchange

SYSTEM = f"{SUPPLIER}_lonn"


@pytest.fixture
def vendor(maskinporten_emulator: MaskinportenEmulator, rsa_key: Any) -> str:
    client_id = str(uuid.uuid4())
    maskinporten_emulator.register_client(
        client_id, orgno=SUPPLIER, scopes=[INNTEKTSMELDING], keys={"test-key-1": rsa_key.public_key()}
    )
    return client_id


@pytest.fixture
def vendor_auth(maskinporten_emulator: MaskinportenEmulator, vendor: str, signer: Any) -> MaskinportenAuth:
    maskinporten_emulator.add_systemuser(CUSTOMER, vendor, system_id=SYSTEM)
    return MaskinportenAuth(vendor, INNTEKTSMELDING, signer, environment=maskinporten_emulator.environment)


def test_an_altinn_tokens_lifetime_is_read_from_the_exchanges_clock(vendor_auth, maskinporten_emulator):
    view = vendor_auth.with_systemuser(CUSTOMER)
    view.get_token()  # the Maskinporten token, on a clock in step with ours
    maskinporten_emulator.clock_offset = -300.0  # the exchange's clock is five minutes behind ours
    altinn = AltinnAuth(view, environment=maskinporten_emulator.url)
    token = altinn.get_token()
    left_by_exchange = jwt.get_unverified_claims(token)["exp"] - maskinporten_emulator.now()
    left_here = cached(altinn).expires_at - time.monotonic()
    assert abs(left_here - left_by_exchange) < 5.0


def test_the_exchanges_retry_after_on_429_reaches_the_caller(vendor_auth, maskinporten_emulator):
    maskinporten_emulator.inject_exchange_fault(Fault.rate_limited(retry_after=7))
    altinn = AltinnAuth(vendor_auth.with_systemuser(CUSTOMER), environment=maskinporten_emulator.url, retry=ONCE)
    with pytest.raises(RateLimitedError) as limited:
        altinn.get_token()
    assert limited.value.retry_after == 7


def test_an_altinn_system_user_view_keeps_its_external_ref(vendor_auth, maskinporten_emulator, vendor):
    maskinporten_emulator.add_systemuser(CUSTOMER, vendor, system_id=f"{SUPPLIER}_hr", external_ref="avdeling-2")
    altinn = AltinnAuth(vendor_auth, environment=maskinporten_emulator.url)
    altinn.with_systemuser(CUSTOMER, external_ref="avdeling-2").get_token()
    details = maskinporten_emulator.grants[-1].claims["authorization_details"]
    assert details[0]["externalRef"] == "avdeling-2"


# A hostile token endpoint


@pytest.fixture(params=["applications-client", "own-client-behind-https-proxy"])
def client_options(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """How the family reaches the token endpoint: the application's own httpx.Client, or the family's own client
    made while ``HTTPS_PROXY`` is set (the emulator's plain-http address is reached directly all the same)."""
    if request.param == "applications-client":
        with httpx.Client() as own:
            yield {"http_client": own}
    else:
        monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
        yield {}


@pytest.mark.parametrize("body_only", [False, True], ids=["headers-dripped", "body-dripped"])
def test_a_dripped_answer_ends_in_a_network_error_within_the_attempt_timeout(
    make_auth, maskinporten_emulator, client_options, body_only
):
    maskinporten_emulator.inject_fault(Fault.drip_feed(1.0, body_only=body_only))
    auth = make_auth(retry=RetryPolicy(attempts=1, deadline=3.0, timeout=2.0), **client_options)
    started = time.monotonic()
    with pytest.raises(NetworkError):
        in_thread(auth.get_token, timeout=30)
    assert time.monotonic() - started < 2.0 + 6.0


def test_a_compressed_body_over_the_size_cap_fails_fast_with_bounded_memory(make_auth, maskinporten_emulator):
    maskinporten_emulator.inject_fault(Fault.gzip_bomb(256 << 20))
    auth = make_auth(retry=ONCE)
    tracemalloc.start()
    try:
        started = time.monotonic()
        with pytest.raises(InvalidResponseError):
            auth.get_token()
        elapsed = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 32 << 20, f"{peak >> 20} MB held while reading a 256-MB answer"
    assert elapsed < 10.0
