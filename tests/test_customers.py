"""Per-customer tokens at scale: views of one auth family, bounds, refusals remembered, readiness, no blocked loop."""

from __future__ import annotations

import asyncio
import gc
import http.server
import os
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jose import jwt

from maskinporten_auth import (
    ConfigurationError,
    DelegationError,
    InvalidScopeError,
    LocalKeySigner,
    MaskinportenAuth,
    Readiness,
    Signer,
    TokenCache,
)
from maskinporten_auth.cache import CachedToken, TokenState
from maskinporten_auth.testing import MaskinportenEmulator, longest_stall, organisation_numbers

from .conftest import SCOPE, SUPPLIER, RecordingSigner, token_from_forked_child

orgnrs = organisation_numbers

CUSTOMER, OTHER_CUSTOMER, NOT_DELEGATED = orgnrs(3, start=31_090_000)


@pytest.fixture
def delegated(maskinporten_emulator: MaskinportenEmulator) -> Callable[[list[str]], None]:
    def delegate(customers: list[str]) -> None:
        for customer in customers:
            maskinporten_emulator.delegate(customer, SUPPLIER, SCOPE)

    return delegate


def claims_of(token: str) -> dict[str, Any]:
    return jwt.get_unverified_claims(token)


# Views


def test_views_share_the_family_and_cost_little(make_auth, delegated):
    delegated([CUSTOMER])
    auth = make_auth()
    view = auth.with_consumer_org(CUSTOMER)
    systemuser = view.with_systemuser(OTHER_CUSTOMER)
    assert isinstance(view, MaskinportenAuth) and isinstance(systemuser, MaskinportenAuth)
    assert view.cache is auth.cache is systemuser.cache
    assert view._provider is auth._provider is systemuser._provider
    assert view._grants.keys is auth._grants.keys  # the keys (and their encoded header) are shared, not copied
    assert (view.consumer_org, view.systemuser_org) == (CUSTOMER, None)
    assert (systemuser.consumer_org, systemuser.systemuser_org) == (None, OTHER_CUSTOMER)
    assert len({auth.cache_key, view.cache_key, systemuser.cache_key}) == 3
    assert auth.with_consumer_org(CUSTOMER).cache_key == view.cache_key

    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    views = [auth.with_consumer_org(customer) for customer in orgnrs(1000)]
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    per_view = sum(stat.size_diff for stat in after.compare_to(before, "filename")) / len(views)
    assert per_view < 2048, f"a view costs {per_view:.0f} bytes"


def test_with_systemuser_asks_for_the_customers_system_user(make_auth, maskinporten_emulator, registered_client):
    for reference in ("lonn-1", None):
        maskinporten_emulator.add_systemuser(CUSTOMER, registered_client, system_id="lonn", external_ref=reference)
    auth = make_auth()
    token = auth.with_systemuser(CUSTOMER, external_ref="lonn-1").get_token()
    claims = maskinporten_emulator.grants[-1].claims
    assert "consumer_org" not in claims
    assert claims["authorization_details"] == [
        {
            "type": "urn:altinn:systemuser",
            "systemuser_org": {"authority": "iso6523-actorid-upis", "ID": f"0192:{CUSTOMER}"},
            "externalRef": "lonn-1",
        }
    ]
    (detail,) = claims_of(token)["authorization_details"]
    assert detail["systemuser_org"]["ID"] == f"0192:{CUSTOMER}"
    plain = auth.with_systemuser(CUSTOMER).get_token()
    assert "externalRef" not in maskinporten_emulator.grants[-1].claims["authorization_details"][0]
    assert plain != token


def test_a_view_replaces_the_customer_it_came_from(make_auth, delegated):
    delegated([CUSTOMER])
    systemuser = make_auth().with_systemuser(OTHER_CUSTOMER)
    delegation = systemuser.with_consumer_org(CUSTOMER)
    assert (delegation.consumer_org, delegation.systemuser_org) == (CUSTOMER, None)
    assert delegation._grants.claims.authorization_details is None
    assert claims_of(delegation.get_token())["consumer"]["ID"] == f"0192:{CUSTOMER}"


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda auth: auth.with_systemuser("123456789"), "orgno"),
        (lambda auth: auth.with_systemuser(CUSTOMER, external_ref=""), "external_ref"),
        (lambda auth: auth.with_consumer_org("31009"), "consumer_org"),
    ],
)
def test_a_bad_customer_fails_when_the_view_is_made(make_auth, call, field):
    with pytest.raises(ConfigurationError) as caught:
        call(make_auth())
    assert caught.value.field == field


def test_a_delegation_and_a_system_user_together_fail_at_construction(make_auth):
    from maskinporten_auth import systemuser_authorization

    with pytest.raises(ConfigurationError) as caught:
        make_auth(consumer_org=CUSTOMER, authorization_details=[systemuser_authorization(OTHER_CUSTOMER)])
    assert caught.value.field == "consumer_org"


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"max_in_flight": 0}, "max_in_flight"),
        ({"max_in_flight": True}, "max_in_flight"),
        ({"remember_refusals": -1}, "remember_refusals"),
        ({"remember_refusals": float("nan")}, "remember_refusals"),
        ({"cache": {}}, "cache"),
    ],
)
def test_bad_family_settings_fail_at_construction(make_auth, options, field):
    with pytest.raises(ConfigurationError) as caught:
        make_auth(**options)
    assert caught.value.field == field


# The cache key comes from configuration alone


class KeyServiceSigner(Signer):
    """A signer whose key service answers only signatures: asking it for the public key is an error here."""

    backend = "key-service"

    def __init__(self, private_key: rsa.RSAPrivateKey, *, delay: float = 0.0) -> None:
        self._local = LocalKeySigner(private_key, kid="test-key-1")
        self.algorithm, self.kid, self.x5c = "RS256", "test-key-1", None
        self.delay = delay

    def sign(self, signing_input: bytes) -> bytes:
        time.sleep(self.delay)  # a blocking SDK call, as boto3 and hvac make
        return self._local.sign(signing_input)

    def public_key(self) -> rsa.RSAPublicKey:
        raise AssertionError("the public key was fetched")


def test_the_cache_key_never_asks_the_key_service(make_auth, rsa_key, delegated):
    delegated([CUSTOMER])
    auth = make_auth(signer=KeyServiceSigner(rsa_key))
    view = auth.with_consumer_org(CUSTOMER)
    assert auth.cache_key != view.cache_key
    assert view.get_token()


def test_the_cache_key_names_the_claims_and_not_the_key(rsa_key, other_rsa_key, maskinporten_emulator):
    def key(*scopes: str, **options: Any) -> str:
        options.setdefault("signer", LocalKeySigner(rsa_key, kid="a"))
        environment = options.pop("environment", maskinporten_emulator.environment)
        return MaskinportenAuth("client", scopes or SCOPE, environment=environment, **options).cache_key

    # A rotated key gets the same tokens: the key is not part of the cache key.
    assert key() == key(signer=LocalKeySigner(other_rsa_key, kid="a")) == key(signer=LocalKeySigner(rsa_key, kid="b"))
    others = {key("nav:other"), key(SCOPE, "nav:other"), key(environment="prod"), key(consumer_org="310539759")}
    others |= {key(resource="https://api.example.no"), key(pid="01017012345")}
    assert len({key(), *others}) == 7
    assert "01017012345" not in key(pid="01017012345")


def test_a_slow_blocking_signer_never_stalls_the_event_loop(make_auth, rsa_key, delegated):
    customers = orgnrs(5)
    delegated(customers)
    auth = make_auth(signer=KeyServiceSigner(rsa_key, delay=0.3))
    views = [auth.with_consumer_org(customer) for customer in customers]

    async def first_tokens() -> list[str]:
        return await asyncio.gather(*(view.aget_token() for view in views))

    tokens, stall = longest_stall(first_tokens)
    assert len(set(tokens)) == 5
    assert stall < 0.1, f"the event loop stalled for {stall * 1000:.0f} ms"


# Bounds


class CountingTransport(httpx.BaseTransport):
    """Counts the token requests in flight at the HTTP layer, independently of the library's own limiter."""

    def __init__(self) -> None:
        self._inner = httpx.HTTPTransport()
        self._lock = threading.Lock()
        self.in_flight = 0
        self.peak = 0
        self.requests = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.in_flight += 1
            self.requests += 1
            self.peak = max(self.peak, self.in_flight)
        try:
            response = self._inner.handle_request(request)
            response.read()
            return response
        finally:
            with self._lock:
                self.in_flight -= 1

    def close(self) -> None:
        self._inner.close()


@pytest.fixture
def counting_client() -> Iterator[tuple[httpx.Client, CountingTransport]]:
    transport = CountingTransport()
    with httpx.Client(transport=transport) as client:
        yield client, transport


@pytest.mark.timeout(600)
def test_a_cold_start_of_ten_thousand_customers_stays_within_the_in_flight_limit(
    make_auth, delegated, maskinporten_emulator, counting_client, rsa_key
):
    customers = orgnrs(10_000)
    delegated(customers)
    client, transport = counting_client
    auth = make_auth(signer=LocalKeySigner(rsa_key, kid="test-key-1"), max_in_flight=8, http_client=client)
    views = [auth.with_consumer_org(customer) for customer in customers]

    async def cold_start() -> list[str]:
        return await asyncio.gather(*(view.aget_token() for view in views))

    tokens = asyncio.run(cold_start())
    assert len(set(tokens)) == len(customers)
    assert maskinporten_emulator.tokens_issued == transport.requests == len(customers)
    assert 1 < transport.peak <= 8
    assert maskinporten_emulator.peak_in_flight <= 8
    assert len(auth.cache) == len(customers)


def test_threads_stay_within_the_in_flight_limit(make_auth, delegated, maskinporten_emulator, counting_client):
    customers = orgnrs(300)
    delegated(customers)
    client, transport = counting_client
    auth = make_auth(max_in_flight=4, http_client=client)
    views = [auth.with_consumer_org(customer) for customer in customers]
    tokens: list[str] = []
    threads = [
        threading.Thread(target=lambda part=part: tokens.extend(view.get_token() for view in views[part::16]))
        for part in range(16)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(set(tokens)) == len(customers) == maskinporten_emulator.tokens_issued
    assert 1 < transport.peak <= 4


def cached(value: str, expires_at: float) -> CachedToken:
    return CachedToken(value, expires_at=expires_at, refresh_at=expires_at - 2, must_refresh_at=expires_at - 1)


def test_the_cache_drops_expired_tokens_first_then_the_least_recently_used():
    cache = TokenCache(max_entries=100)
    now = time.monotonic()
    for index in range(100):
        cache.put(f"k{index}", cached(f"t{index}", now - 1 if index % 10 == 0 else now + 100))
    assert len(cache) == 100
    cache.get("k1")  # recently used: survives
    cache.put("new", cached("fresh", now + 100))
    assert len(cache) == 91  # the ten expired ones went, no valid one
    assert all(cache.get(f"k{index}") is None for index in range(0, 100, 10))
    for index in range(100, 111):
        cache.put(f"k{index}", cached(f"t{index}", now + 100))
    assert len(cache) <= 100
    assert cache.get("k1") is not None and cache.get("k2") is None  # k2 was the least recently used


def test_the_cache_keeps_the_longer_lived_token():
    cache = TokenCache()
    now = time.monotonic()
    cache.put("k", cached("long", now + 100))
    cache.put("k", cached("short", now + 50))
    assert cache.get("k").value == "long"
    assert cached("x", now + 100).state(now) is TokenState.FRESH
    assert cached("x", now + 1.5).state(now) is TokenState.REFRESH_DUE
    assert cached("x", now + 0.5).state(now) is TokenState.MUST_REFRESH
    assert cached("x", now - 0.5).state(now) is TokenState.EXPIRED


def test_a_bounded_cache_serves_more_customers_than_it_holds(make_auth, delegated, maskinporten_emulator):
    customers = orgnrs(30)
    delegated(customers)
    auth = make_auth(cache=TokenCache(max_entries=10))
    for customer in customers:
        assert auth.with_consumer_org(customer).get_token()
    assert len(auth.cache) <= 10
    assert maskinporten_emulator.tokens_issued == 30


@pytest.mark.parametrize("max_entries", [0, -1, 1.5, True])
def test_a_bad_cache_bound_fails_at_construction(max_entries):
    with pytest.raises(ConfigurationError) as caught:
        TokenCache(max_entries=max_entries)
    assert caught.value.field == "max_entries"


# Refusals remembered


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_customer_without_delegation_costs_one_grant_per_remembering_time(make_auth, maskinporten_emulator, mode):
    events: list[Any] = []
    remember = 1.5  # room for a full garbage collection in a large test process
    auth = make_auth(remember_refusals=remember, on_event=events.append)
    view = auth.with_consumer_org(NOT_DELEGATED)

    def attempt(target: MaskinportenAuth) -> DelegationError:
        call = target.get_token if mode == "sync" else lambda: asyncio.run(target.aget_token())
        with pytest.raises(DelegationError) as caught:
            call()
        return caught.value

    first = attempt(view)
    started = time.monotonic()
    again = [attempt(view) for _ in range(99)]
    again.append(attempt(auth.with_consumer_org(NOT_DELEGATED)))  # another view of the family remembers too
    assert time.monotonic() - started < remember, "the machine stalled; the memory could not be observed"
    assert len(maskinporten_emulator.grants) == 1
    assert all((error.code, error.description) == (first.code, first.description) for error in again)
    assert first.code == "MP-251"
    assert [event.kind for event in events].count("refused") == 100
    time.sleep(remember - (time.monotonic() - started) + 0.1)
    attempt(view)
    assert len(maskinporten_emulator.grants) == 2


def test_a_refusal_is_remembered_per_customer(make_auth, delegated, maskinporten_emulator):
    delegated([CUSTOMER])
    auth = make_auth()
    with pytest.raises(DelegationError):
        auth.with_consumer_org(NOT_DELEGATED).get_token()
    assert auth.with_consumer_org(CUSTOMER).get_token()
    assert len(maskinporten_emulator.grants) == 2


def test_remembering_can_be_turned_off(make_auth, maskinporten_emulator):
    view = make_auth(remember_refusals=0).with_consumer_org(NOT_DELEGATED)
    for _ in range(3):
        with pytest.raises(DelegationError):
            view.get_token()
    assert len(maskinporten_emulator.grants) == 3


def test_a_scope_refusal_is_remembered(maskinporten_emulator, recording_signer, registered_client):
    auth = MaskinportenAuth(
        registered_client, "nav:not/registered", recording_signer, maskinporten_emulator.environment
    )
    for _ in range(5):
        with pytest.raises(InvalidScopeError):
            auth.get_token()
    assert len(maskinporten_emulator.grants) == 1


def test_a_delegation_given_later_is_found_after_the_remembering_time(make_auth, maskinporten_emulator):
    view = make_auth(remember_refusals=0.3).with_consumer_org(NOT_DELEGATED)
    with pytest.raises(DelegationError):
        view.get_token()
    maskinporten_emulator.delegate(NOT_DELEGATED, SUPPLIER, SCOPE)
    with pytest.raises(DelegationError):
        view.get_token()  # still remembered
    time.sleep(0.4)
    assert claims_of(view.get_token())["consumer"]["ID"] == f"0192:{NOT_DELEGATED}"


# Readiness


def test_check_tells_ready_from_refused(
    make_auth, delegated, maskinporten_emulator, recording_signer, registered_client
):
    delegated([CUSTOMER])
    auth = make_auth()
    ready = auth.with_consumer_org(CUSTOMER).check()
    assert ready and ready == Readiness(True) and ready.code is None
    refused = auth.with_consumer_org(NOT_DELEGATED).check()
    assert not refused
    assert refused.code == "MP-251"
    assert NOT_DELEGATED in (refused.description or "")
    assert "delegate" in (refused.hint or "")
    assert isinstance(refused.error, DelegationError)
    scope = MaskinportenAuth(
        registered_client, "nav:not/registered", recording_signer, maskinporten_emulator.environment
    )
    refused_scope = asyncio.run(scope.acheck())
    assert (refused_scope.ready, refused_scope.code) == (False, "MP-200")
    assert refused_scope.hint


def test_a_fresh_check_asks_again_at_once(make_auth, maskinporten_emulator):
    view = make_auth().with_consumer_org(NOT_DELEGATED)
    assert view.check().code == "MP-251"
    maskinporten_emulator.delegate(NOT_DELEGATED, SUPPLIER, SCOPE)
    assert view.check().code == "MP-251"  # remembered: no new request
    assert len(maskinporten_emulator.grants) == 1
    assert asyncio.run(view.acheck(fresh=True))
    assert len(maskinporten_emulator.grants) == 2


def test_check_raises_what_is_not_an_answer(make_auth, maskinporten_emulator):
    from maskinporten_auth import RetryPolicy, ServerError
    from maskinporten_auth.testing import Fault

    maskinporten_emulator.inject_fault(Fault.server_error(503), times=2)
    with pytest.raises(ServerError):
        make_auth(retry=RetryPolicy(attempts=2, backoff=0.01)).check()


# Pinned behaviour of the provider


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_late_401_for_the_old_token_keeps_the_fresh_one(make_auth, maskinporten_emulator, mode):
    auth = make_auth()
    old = auth.get_token()
    request = httpx.Request("GET", "https://api.example.no/a")
    unauthorized = httpx.Response(401, request=request)
    if mode == "sync":
        first, late = (
            auth.sync_auth_flow(request),
            auth.sync_auth_flow(httpx.Request("GET", "https://api.example.no/b")),
        )
        assert next(first).headers["Authorization"] == next(late).headers["Authorization"] == f"Bearer {old}"
        fresh = first.send(unauthorized).headers["Authorization"]
        resent = late.send(unauthorized).headers["Authorization"]
    else:

        async def flows() -> tuple[str, str]:
            first = auth.async_auth_flow(request)
            late = auth.async_auth_flow(httpx.Request("GET", "https://api.example.no/b"))
            await first.__anext__()
            await late.__anext__()
            fresh = (await first.asend(unauthorized)).headers["Authorization"]
            return fresh, (await late.asend(unauthorized)).headers["Authorization"]

        fresh, resent = asyncio.run(flows())
    assert fresh != f"Bearer {old}"
    assert resent == fresh
    assert maskinporten_emulator.tokens_issued == 2
    assert auth.get_token() == fresh.removeprefix("Bearer ")


def test_a_cancelled_caller_leaves_no_orphaned_fetch(make_auth, maskinporten_emulator, recording_signer):
    auth = make_auth()
    entered, release = recording_signer.hold_next()

    async def main() -> str:
        cancelled = asyncio.create_task(auth.aget_token())
        joined = asyncio.create_task(auth.aget_token())
        assert await asyncio.to_thread(entered.wait, 10)
        cancelled.cancel()
        await asyncio.sleep(0.05)
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        first = await asyncio.wait_for(joined, 10)
        after = await asyncio.wait_for(auth.aget_token(), 10)
        assert after == first
        return first

    started = time.monotonic()
    assert asyncio.run(main())
    assert time.monotonic() - started < 10
    assert maskinporten_emulator.tokens_issued == 1


class InterruptOnce(RecordingSigner):
    """Raises KeyboardInterrupt from the first signature, as a signal handler in the fetching thread would."""

    interrupted = False

    def sign(self, signing_input: bytes) -> bytes:
        if not self.interrupted:
            self.interrupted = True
            raise KeyboardInterrupt
        return super().sign(signing_input)


def test_an_interrupted_fetch_leaves_no_orphaned_flight(make_auth, rsa_key, maskinporten_emulator):
    auth = make_auth(signer=InterruptOnce(rsa_key, kid="test-key-1"))
    with pytest.raises(KeyboardInterrupt):
        auth.get_token()
    started = time.monotonic()
    assert auth.get_token()
    assert time.monotonic() - started < 5
    assert maskinporten_emulator.tokens_issued == 1


def test_several_event_loops_share_one_fetch_per_customer(make_auth, delegated, maskinporten_emulator):
    customers = orgnrs(50)
    delegated(customers)
    auth = make_auth()
    views = [auth.with_consumer_org(customer) for customer in customers]
    results: list[list[str]] = []

    async def tokens() -> list[str]:
        return await asyncio.gather(*(view.aget_token() for view in views))

    loops = [threading.Thread(target=lambda: results.append(asyncio.run(tokens()))) for _ in range(4)]
    for thread in loops:
        thread.start()
    for thread in loops:
        thread.join(timeout=60)
    assert len(results) == 4 and all(result == results[0] for result in results)
    assert maskinporten_emulator.tokens_issued == 50


def test_async_callers_fetch_through_the_applications_http_client(make_auth, delegated, maskinporten_emulator):
    customers = orgnrs(20)
    delegated(customers)
    sent_from: set[int] = set()
    loop_thread: list[int] = []

    def record(request: httpx.Request) -> None:
        sent_from.add(threading.get_ident())

    with httpx.Client(event_hooks={"request": [record]}) as client:
        auth = make_auth(http_client=client)

        async def main() -> list[str]:
            loop_thread.append(threading.get_ident())
            return await asyncio.gather(*(auth.with_consumer_org(c).aget_token() for c in customers))

        assert len(set(asyncio.run(main()))) == 20
    assert sent_from and loop_thread[0] not in sent_from  # every request went through it, none on the loop
    assert maskinporten_emulator.tokens_issued == 20


# Lifecycle


def test_the_auth_is_a_context_manager_that_releases_its_connections(make_auth):
    with make_auth() as auth:
        assert auth.get_token()
        assert auth._endpoint.http._client is not None
    assert auth._endpoint.http._client is None
    assert auth._provider._workers._started == 0
    assert auth.get_token()  # usable again: it reopens what it needs


def test_the_auth_is_an_async_context_manager(make_auth):
    async def main() -> MaskinportenAuth:
        async with make_auth() as auth:
            assert await auth.aget_token()
            assert auth._provider._workers._started > 0
        return auth

    auth = asyncio.run(main())
    assert auth._provider._workers._started == 0 and auth._endpoint.http._client is None


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork on this platform")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Python 3.12+ warns about fork with threads
def test_a_forked_child_fetches_async_with_its_own_workers(make_auth, delegated, maskinporten_emulator):
    customers = orgnrs(2)
    delegated(customers)
    auth = make_auth()
    assert asyncio.run(auth.with_consumer_org(customers[0]).aget_token())  # the parent's workers exist now
    child_token = token_from_forked_child(
        lambda: asyncio.run(asyncio.wait_for(auth.with_consumer_org(customers[1]).aget_token(), 20))
    )
    assert claims_of(child_token)["consumer"]["ID"] == f"0192:{customers[1]}"


def test_fetches_reuse_one_pooled_client_and_its_connections(make_auth, delegated, maskinporten_emulator, monkeypatch):
    customers = orgnrs(40)
    delegated(customers)
    made: list[str] = []
    for kind in (httpx.Client, httpx.AsyncClient):
        original = kind.__init__

        def counting(self: Any, *args: Any, _original: Any = original, _kind: type = kind, **kwargs: Any) -> None:
            made.append(_kind.__name__)
            _original(self, *args, **kwargs)

        monkeypatch.setattr(kind, "__init__", counting)
    auth = make_auth(max_in_flight=4)

    async def fetch_all() -> list[str]:
        return await asyncio.gather(*(auth.with_consumer_org(customer).aget_token() for customer in customers))

    assert len(set(asyncio.run(fetch_all()))) == 40
    assert [auth.with_consumer_org(customer).get_token() for customer in customers]
    assert made == ["Client"]  # one pooled client for every fetch, sync and async
    connections = auth._endpoint.http._client._transport._pool.connections
    assert 1 <= len(connections) <= 4  # kept alive and reused: at most one per fetch in flight
    assert maskinporten_emulator.tokens_issued == 40


class ForwardingProxy(http.server.BaseHTTPRequestHandler):
    """An HTTP forward proxy: it relays each absolute-form request to its origin and notes the request line."""

    seen: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        self.seen.append(f"{self.command} {self.path}")
        body = self.rfile.read(int(self.headers["Content-Length"]))
        headers = {name: value for name, value in self.headers.items() if name.lower() != "proxy-connection"}
        with httpx.Client(trust_env=False) as origin:
            answer = origin.request(self.command, self.path, content=body, headers=headers)
        self.send_response(answer.status_code)
        for name, value in answer.headers.items():
            if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.content)))
        self.end_headers()
        self.wfile.write(answer.content)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_a_proxy_named_by_the_environment_carries_the_token_requests(make_auth, maskinporten_emulator, monkeypatch):
    """The family's own client honours HTTP(S)_PROXY as httpx does; without one its requests go straight out."""
    ForwardingProxy.seen = []
    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), ForwardingProxy)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        assert make_auth().get_token()
        assert ForwardingProxy.seen == []
        for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.server_address[1]}")
        assert make_auth().get_token()
    finally:
        proxy.shutdown()
        proxy.server_close()
    assert ForwardingProxy.seen == [f"POST {maskinporten_emulator.environment.token_endpoint}"]


def test_a_used_token_gets_one_second_chance_per_sweep():
    cache = TokenCache(max_entries=100)
    now = time.monotonic()
    for index in range(100):
        cache.put(f"k{index}", cached(f"t{index}", now + 100))
    cache.get("k0")
    cache.put("k100", cached("t100", now + 100))  # the sweep passes k0 (clearing its use) and drops k1 and k2
    assert cache.get("k0") is not None
    assert cache.get("k1") is None and cache.get("k2") is None
    for index in range(101, 104):
        cache.put(f"k{index}", cached(f"t{index}", now + 100))
    assert cache.get("k0") is not None  # used again (by the check above) since the last sweep: passed over again
    assert cache.get("k3") is None


def test_when_every_token_was_used_the_oldest_goes():
    cache = TokenCache(max_entries=10)
    now = time.monotonic()
    for index in range(10):
        cache.put(f"k{index}", cached(f"t{index}", now + 100))
        cache.get(f"k{index}")
    cache.put("k10", cached("t10", now + 100))  # over the bound: down to 9, the bound less one percent (at least 1)
    assert len(cache) == 9
    assert cache.get("k0") is None and cache.get("k1") is None
    assert all(cache.get(f"k{index}") is not None for index in range(2, 11))  # k10 too: it was never used, but new


def test_a_cache_of_one_keeps_the_token_just_put():
    cache = TokenCache(max_entries=1)
    now = time.monotonic()
    cache.put("old", cached("t-old", now + 100))
    cache.put("new", cached("t-new", now + 100))
    assert len(cache) == 1
    assert cache.get("new") is not None
