"""Resilience at the token endpoint: the fault matrix, retries, early and background refresh, clock skew, fork.

Every test that talks to the emulator ends by checking that no grant was sent twice: the emulator's
``reused_jtis`` is empty and every attempt it received carried the ``jti`` of a grant signed for that attempt.
Time bounds are generous (a loaded 2-core machine must pass); they prove "bounded", not "fast".
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import os
import socket
import threading
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass

import httpx
import pytest

from maskinporten_auth import (
    ClockSkewError,
    Environment,
    InvalidResponseError,
    MaskinportenAuth,
    MaskinportenError,
    NetworkError,
    RateLimitedError,
    RefreshPolicy,
    RetryPolicy,
    ServerError,
    TokenEvent,
    TokenRequestError,
)
from maskinporten_auth.provider import Flight
from maskinporten_auth.retry import MIN_ATTEMPT_TIME
from maskinporten_auth.testing import Fault, MaskinportenEmulator

from .conftest import token_from_forked_child

#: Slack on top of a retry deadline for signing, thread scheduling and a loaded machine.
SLACK = 3.0
#: The policy of the fault matrix: small backoffs, a short attempt timeout (for the slow faults), a 10-s deadline.
MATRIX_POLICY = RetryPolicy(attempts=3, deadline=10.0, backoff=0.05, max_backoff=0.2, timeout=0.5)


def assert_every_attempt_had_a_new_grant(emulator: MaskinportenEmulator, signer_jtis: list[str]) -> None:
    """No jti reached the emulator twice, and every attempt it received carried a grant signed for it."""
    assert emulator.reused_jtis == []
    received = [record.jti for record in emulator.grants]
    assert len(set(received)) == len(received)
    assert set(received) <= set(signer_jtis)
    assert len(set(signer_jtis)) == len(signer_jtis)


def timed(call: Callable[[], object]) -> tuple[object, float]:
    """Run ``call``; return what it returned (or raised) and how long it took."""
    started = time.monotonic()
    try:
        outcome = call()
    except MaskinportenError as exc:
        outcome = exc
    return outcome, time.monotonic() - started


def get_token(auth: MaskinportenAuth, mode: str) -> str:
    return auth.get_token() if mode == "sync" else asyncio.run(auth.aget_token())


@dataclass(frozen=True)
class FaultKind:
    fault: Fault
    error: type[TokenRequestError]


FAULT_KINDS = {
    "500": FaultKind(Fault.server_error(500), ServerError),
    "502": FaultKind(Fault.server_error(502), ServerError),
    "503": FaultKind(Fault.server_error(503), ServerError),
    "503-retry-after": FaultKind(Fault.server_error(503, retry_after="0.3"), RateLimitedError),
    "504": FaultKind(Fault.server_error(504), ServerError),
    "429": FaultKind(Fault.rate_limited(), RateLimitedError),
    "429-retry-after": FaultKind(Fault.rate_limited(retry_after="0.3"), RateLimitedError),
    "connection-reset": FaultKind(Fault.reset_connection(), NetworkError),
    "connection-dropped": FaultKind(Fault.dropped_connection(), NetworkError),
    "read-timeout": FaultKind(Fault.slow(60), NetworkError),  # answered only when the emulator stops
    "malformed-json": FaultKind(Fault.malformed_json(), InvalidResponseError),
    "html-error-page-502": FaultKind(Fault.html_error_page(502), ServerError),
    "html-error-page-200": FaultKind(Fault.html_error_page(200), InvalidResponseError),
    "200-without-access-token": FaultKind(Fault.missing_access_token(), InvalidResponseError),
    "expires-in-text": FaultKind(Fault.invalid_expires_in("soon"), InvalidResponseError),
    "expires-in-zero": FaultKind(Fault.invalid_expires_in(0), InvalidResponseError),
    "expires-in-negative": FaultKind(Fault.invalid_expires_in(-120), InvalidResponseError),
    "expires-in-null": FaultKind(Fault.invalid_expires_in(None), InvalidResponseError),
    "expires-in-huge": FaultKind(Fault.invalid_expires_in(10**400), InvalidResponseError),
    # A drip faster than the attempt timeout: no single read ever times out, only the attempt's deadline cuts it.
    "drip-headers": FaultKind(Fault.drip_feed(0.1), NetworkError),
    "drip-body": FaultKind(Fault.drip_feed(0.1, body_only=True), NetworkError),
    "gzip-bomb": FaultKind(Fault.gzip_bomb(64 << 20), InvalidResponseError),  # 64 KiB that inflate to 64 MiB
    "huge-body": FaultKind(
        Fault(status=200, body=bytes(10 << 20), content_type="application/json"), InvalidResponseError
    ),
    "access-token-crlf": FaultKind(
        Fault.valid_looking_token("eyJhbGciOi.e30.c2ln\r\nX-Injected: 1"), InvalidResponseError
    ),
    "access-token-non-ascii": FaultKind(Fault.valid_looking_token("eyJhbGciOi.e30.c2lnø"), InvalidResponseError),
    "access-token-space": FaultKind(Fault.valid_looking_token("eyJhbGciOi.e30 c2ln"), InvalidResponseError),
}


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("kind", FAULT_KINDS.values(), ids=FAULT_KINDS.keys())
def test_a_transient_fault_is_retried_with_a_new_grant(kind, mode, make_auth, maskinporten_emulator, recording_signer):
    maskinporten_emulator.inject_fault(kind.fault, times=MATRIX_POLICY.attempts - 1)
    auth = make_auth(retry=MATRIX_POLICY)
    token, elapsed = timed(lambda: get_token(auth, mode))
    assert isinstance(token, str), token
    grants = maskinporten_emulator.grants
    assert len(grants) == MATRIX_POLICY.attempts
    assert grants[-1].status == 200
    assert maskinporten_emulator.tokens_issued == 1
    assert elapsed < MATRIX_POLICY.deadline + SLACK
    assert_every_attempt_had_a_new_grant(maskinporten_emulator, recording_signer.jtis)


@pytest.mark.parametrize("kind", FAULT_KINDS.values(), ids=FAULT_KINDS.keys())
def test_a_persistent_fault_is_a_typed_error_within_the_deadline(
    kind, make_auth, maskinporten_emulator, recording_signer
):
    maskinporten_emulator.inject_fault(kind.fault, times=10)
    error, elapsed = timed(make_auth(retry=MATRIX_POLICY).get_token)
    assert type(error) is kind.error
    assert error.retryable
    assert elapsed < MATRIX_POLICY.deadline + SLACK
    assert len(maskinporten_emulator.grants) == MATRIX_POLICY.attempts
    assert maskinporten_emulator.tokens_issued == 0
    assert_every_attempt_had_a_new_grant(maskinporten_emulator, recording_signer.jtis)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_connection_refused_is_a_network_error_after_every_attempt(
    mode, make_auth, maskinporten_emulator, recording_signer
):
    refused = Environment(issuer=maskinporten_emulator.issuer, token_endpoint=f"http://127.0.0.1:{closed_port()}/token")
    error, elapsed = timed(lambda: get_token(make_auth(environment=refused, retry=MATRIX_POLICY), mode))
    assert isinstance(error, NetworkError)
    assert "ConnectError" in str(error)
    assert elapsed < MATRIX_POLICY.deadline + SLACK
    assert len(recording_signer.jtis) == MATRIX_POLICY.attempts
    assert len(set(recording_signer.jtis)) == MATRIX_POLICY.attempts


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_response_slower_than_the_deadline_is_cut_off_at_the_deadline(
    mode, make_auth, maskinporten_emulator, recording_signer
):
    policy = RetryPolicy(attempts=5, deadline=1.5, timeout=30.0)
    maskinporten_emulator.inject_fault(Fault.slow(20), times=5)
    error, elapsed = timed(lambda: get_token(make_auth(retry=policy), mode))
    assert isinstance(error, NetworkError)
    assert "timed out" in str(error)
    assert policy.deadline - 0.1 <= elapsed < policy.deadline + SLACK
    assert len(maskinporten_emulator.grants) == 1
    assert_every_attempt_had_a_new_grant(maskinporten_emulator, recording_signer.jtis)


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("body_only", [False, True], ids=["headers", "body"])
def test_a_one_byte_a_second_drip_is_cut_off_at_the_attempt_deadline(
    body_only, mode, make_auth, maskinporten_emulator, recording_signer
):
    # Each byte comes well within the 2-s timeout, so only a deadline over the whole attempt can end it.
    policy = RetryPolicy(attempts=1, deadline=4.0, timeout=2.0)
    maskinporten_emulator.inject_fault(Fault.drip_feed(1.0, body_only=body_only))

    error, elapsed = timed(lambda: get_token(make_auth(retry=policy), mode))
    assert isinstance(error, NetworkError), error
    assert "timed out" in str(error)
    assert policy.timeout - 0.1 <= elapsed < policy.timeout + 1.5
    assert_every_attempt_had_a_new_grant(maskinporten_emulator, recording_signer.jtis)


def test_a_drip_on_a_kept_alive_connection_is_cut_off_too(make_auth, maskinporten_emulator, recording_signer):
    """The second attempt reuses the connection of the first, which answered 500 and stayed open."""
    policy = RetryPolicy(attempts=2, deadline=10.0, backoff=0.01, max_backoff=0.01, timeout=1.0)
    maskinporten_emulator.inject_fault(Fault.server_error(500))
    maskinporten_emulator.inject_fault(Fault.drip_feed(0.2))
    error, elapsed = timed(make_auth(retry=policy).get_token)
    assert isinstance(error, NetworkError), error
    assert "timed out" in str(error)
    assert elapsed < 2 * policy.timeout + SLACK
    assert len(maskinporten_emulator.grants) == 2
    assert_every_attempt_had_a_new_grant(maskinporten_emulator, recording_signer.jtis)


def test_a_gzip_bomb_fails_fast_in_bounded_memory(make_auth, maskinporten_emulator):
    bomb = Fault.gzip_bomb(256 << 20)
    assert len(bomb.encoded_body()[0]) < 1 << 20  # under a megabyte on the wire
    maskinporten_emulator.inject_fault(bomb)
    auth = make_auth(retry=RetryPolicy(attempts=1))
    tracemalloc.start()
    try:
        error, _ = timed(auth.get_token)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(error, InvalidResponseError), error
    assert "asked for identity" in str(error)  # never inflated
    assert peak < 16 << 20


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_never_followed_whatever_the_client(status, mode, make_auth, maskinporten_emulator):
    async def aget_token() -> str:
        with httpx.Client(follow_redirects=True) as client:
            return await make_auth(retry=MATRIX_POLICY, http_client=client).aget_token()

    def get_token() -> str:
        with httpx.Client(follow_redirects=True) as client:
            return make_auth(retry=MATRIX_POLICY, http_client=client).get_token()

    with MaskinportenEmulator() as elsewhere:
        maskinporten_emulator.inject_fault(Fault.redirect(elsewhere.url + "/token", status), times=5)
        error, _ = timed(get_token if mode == "sync" else lambda: asyncio.run(aget_token()))
        assert elsewhere.token_requests == 0
    assert type(error) is TokenRequestError
    assert not error.retryable
    assert error.status == status
    assert "redirect" in str(error) and elsewhere.url in str(error)
    assert len(maskinporten_emulator.grants) == 1


FINAL_ANSWERS = {
    "400-invalid-request": (400, {"error": "invalid_request", "error_description": "Bad form"}),
    "400-invalid-grant": (400, {"error": "invalid_grant", "error_description": "Invalid assertion"}),
    "400-invalid-scope": (400, {"error": "invalid_scope", "error_description": "Invalid scopes"}),
    "400-unsupported-grant-type": (400, {"error": "unsupported_grant_type"}),
    "401-invalid-client": (401, {"error": "invalid_client"}),
    "403-forbidden": (403, {"error": "forbidden", "error_uri": "https://x/errors/MP-250"}),
    "404-html": (404, "<html><body>Not Found</body></html>"),
    "405-empty": (405, ""),
    "409-json-without-error": (409, {"message": "conflict"}),
    "413-text": (413, "Request Entity Too Large"),
    "418-teapot": (418, {"error": "teapot"}),
}


@pytest.mark.parametrize(("status", "body"), FINAL_ANSWERS.values(), ids=FINAL_ANSWERS.keys())
def test_a_4xx_is_never_retried(status, body, make_auth, maskinporten_emulator, recording_signer):
    maskinporten_emulator.inject_fault(status=status, body=body, times=5)
    error, _ = timed(make_auth(retry=MATRIX_POLICY).get_token)
    assert isinstance(error, TokenRequestError)
    assert not error.retryable
    assert error.status == status
    assert len(maskinporten_emulator.grants) == 1
    assert len(recording_signer.jtis) == 1


@pytest.mark.parametrize(
    ("retry_after", "minimum"),
    [
        pytest.param(lambda: "1", 1.0, id="seconds"),
        pytest.param(lambda: email.utils.formatdate(time.time() + 2, usegmt=True), 0.9, id="http-date"),
    ],
)
def test_retry_after_is_honoured(retry_after, minimum, make_auth, maskinporten_emulator, recording_signer):
    maskinporten_emulator.inject_fault(Fault.rate_limited(retry_after=retry_after()))
    token, elapsed = timed(make_auth().get_token)
    assert isinstance(token, str), token
    limited, accepted = maskinporten_emulator.grants
    assert elapsed >= minimum
    assert accepted.received_at - limited.received_at >= minimum - 0.05
    assert_every_attempt_had_a_new_grant(maskinporten_emulator, recording_signer.jtis)


def test_retry_after_beyond_the_deadline_fails_at_once(make_auth, maskinporten_emulator):
    maskinporten_emulator.inject_fault(Fault.rate_limited(retry_after=600))
    error, elapsed = timed(make_auth(retry=RetryPolicy(deadline=5.0)).get_token)
    assert isinstance(error, RateLimitedError)
    assert error.retry_after == 600
    assert elapsed < SLACK
    assert len(maskinporten_emulator.grants) == 1


@pytest.mark.parametrize("attempts", [1, 2, 5])
def test_retries_are_bounded_by_attempts(attempts, make_auth, maskinporten_emulator, recording_signer):
    maskinporten_emulator.inject_fault(Fault.server_error(500), times=10)
    policy = RetryPolicy(attempts=attempts, backoff=0.01, max_backoff=0.02)
    error, _ = timed(make_auth(retry=policy).get_token)
    assert isinstance(error, ServerError)
    assert len(maskinporten_emulator.grants) == attempts
    assert_every_attempt_had_a_new_grant(maskinporten_emulator, recording_signer.jtis)


def test_retries_are_bounded_by_the_deadline(make_auth, maskinporten_emulator, recording_signer):
    maskinporten_emulator.inject_fault(Fault.server_error(503), times=1000)
    policy = RetryPolicy(attempts=1000, deadline=1.5, backoff=0.2, max_backoff=0.2)
    error, elapsed = timed(make_auth(retry=policy).get_token)
    assert isinstance(error, ServerError)
    assert elapsed < policy.deadline + SLACK
    assert 2 <= len(maskinporten_emulator.grants) < 100
    assert_every_attempt_had_a_new_grant(maskinporten_emulator, recording_signer.jtis)


def test_no_retry_starts_too_close_to_the_deadline_to_finish():
    """An attempt is cut off at the deadline: one started in its last moments would only time out."""
    error = ServerError("boom", status=503)
    with pytest.raises(ServerError):
        RetryPolicy(deadline=MIN_ATTEMPT_TIME - 0.05, backoff=0.001).start().delay_after(error)
    assert RetryPolicy(deadline=5.0, backoff=0.001).start().delay_after(error) <= 0.001
    # A short attempt timeout needs only that much time.
    short = RetryPolicy(deadline=MIN_ATTEMPT_TIME - 0.05, backoff=0.001, timeout=0.01)
    assert short.start().delay_after(error) <= 0.001


def test_backoff_is_full_jitter_under_a_doubling_cap():
    policy = RetryPolicy(attempts=6, deadline=3600, backoff=0.5, max_backoff=3.0)
    error = ServerError("boom", status=500)
    samples: dict[int, list[float]] = {}
    for _ in range(300):
        schedule = policy.start()
        for retry in range(1, policy.attempts):
            samples.setdefault(retry, []).append(schedule.delay_after(error))
    for retry, delays in samples.items():
        cap = min(policy.max_backoff, policy.backoff * 2 ** (retry - 1))
        assert all(0 <= delay <= cap for delay in delays)
        assert max(delays) > 0.8 * cap  # full jitter spans the whole range...
        assert min(delays) < 0.2 * cap  # ...down to almost nothing


# Early refresh

EARLY = RefreshPolicy(refresh_window=(0.01, 0.01), failure_cooldown=2.0)


@pytest.fixture
def token_in_refresh_window(maskinporten_emulator, make_auth) -> Callable[..., tuple[MaskinportenAuth, str]]:
    """Return a function giving an auth whose cached 30-s token is past its refresh point (0.3 s) but valid."""
    maskinporten_emulator.token_lifetime = 30

    def make(**options) -> tuple[MaskinportenAuth, str]:
        auth = make_auth(refresh=EARLY, **options)
        token = auth.get_token()
        time.sleep(30 * EARLY.refresh_window[1] + 0.05)
        return auth, token

    return make


def test_in_the_refresh_window_one_caller_refreshes_and_the_others_do_not_wait(
    token_in_refresh_window, maskinporten_emulator, recording_signer
):
    auth, old = token_in_refresh_window()
    entered, release = recording_signer.hold_next()
    refreshed: list[str] = []
    leader = threading.Thread(target=lambda: refreshed.append(auth.get_token()))
    leader.start()
    try:
        assert entered.wait(10), "no caller started the refresh"
        seen: list[str] = []
        others = [threading.Thread(target=lambda: seen.append(auth.get_token())) for _ in range(16)]

        async def tasks() -> list[str]:
            return list(await asyncio.gather(*(auth.aget_token() for _ in range(16))))

        for thread in others:
            thread.start()
        seen.extend(asyncio.run(tasks()))
        for thread in others:
            thread.join(timeout=10)
        # All 32 got an answer while the refresh is still held in the signer: nobody waited for it.
        assert seen == [old] * 32
        assert leader.is_alive()
    finally:
        release.set()
        leader.join(timeout=10)
    assert refreshed != [old] and len(refreshed) == 1
    assert auth.get_token() == refreshed[0]
    assert maskinporten_emulator.tokens_issued == 2
    assert_every_attempt_had_a_new_grant(maskinporten_emulator, recording_signer.jtis)


def test_a_failed_early_refresh_keeps_the_token_warns_and_cools_down(
    token_in_refresh_window, maskinporten_emulator, recording_signer, caplog
):
    events: list[TokenEvent] = []
    auth, old = token_in_refresh_window(retry=RetryPolicy(attempts=2, backoff=0.01), on_event=events.append)
    maskinporten_emulator.inject_fault(Fault.server_error(500), times=2)
    with caplog.at_level(logging.WARNING, logger="maskinporten_auth"):
        assert auth.get_token() == old
        failed_at = time.monotonic()
        requests_after_failure = maskinporten_emulator.token_requests
        assert [auth.get_token() for _ in range(50)] == [old] * 50
        calls_took = time.monotonic() - failed_at
    assert calls_took < EARLY.failure_cooldown, "the machine stalled; the cooldown could not be observed"
    assert maskinporten_emulator.token_requests == requests_after_failure == 3
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "early token refresh failed" in r.message]
    assert len(warnings) == 1
    failures = [event for event in events if event.kind != "cache_hit"][1:]
    assert [event.kind for event in failures] == ["refresh_failed"]
    assert isinstance(failures[0].error, ServerError)
    time.sleep(EARLY.failure_cooldown - calls_took + 0.05)
    new = auth.get_token()
    assert new != old
    assert maskinporten_emulator.tokens_issued == 2
    assert_every_attempt_had_a_new_grant(maskinporten_emulator, recording_signer.jtis)


def test_background_refresh_never_makes_a_caller_wait_on_a_slow_signer(
    maskinporten_emulator, make_auth, recording_signer, monkeypatch
):
    maskinporten_emulator.token_lifetime = 4
    recording_signer.delay = 0.05  # a remote key service's signature
    auth = make_auth(background_refresh=True, refresh=RefreshPolicy(refresh_window=(0.3, 0.35)))
    first = auth.get_token()  # a cold cache: this caller has to wait
    waits: list[str] = []
    real_wait, real_wait_async = Flight.wait, Flight.wait_async

    def wait(self, timeout):
        waits.append("thread")
        return real_wait(self, timeout)

    async def wait_async(self, timeout):
        waits.append("task")
        return await real_wait_async(self, timeout)

    monkeypatch.setattr(Flight, "wait", wait)
    monkeypatch.setattr(Flight, "wait_async", wait_async)
    tokens: set[str] = set()
    stop = time.monotonic() + 4.5  # past two refresh points (about 1.2 s and 2.5 s)

    def thread_caller() -> None:
        while time.monotonic() < stop:
            tokens.add(auth.get_token())
            time.sleep(0.005)

    async def task_caller() -> None:
        while time.monotonic() < stop:
            tokens.add(await auth.aget_token())
            await asyncio.sleep(0.005)

    async def tasks() -> None:
        await asyncio.gather(*(task_caller() for _ in range(4)))

    callers = [threading.Thread(target=thread_caller) for _ in range(4)]
    callers.append(threading.Thread(target=asyncio.run, args=(tasks(),)))
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(timeout=20)
    assert waits == []
    assert first in tokens and len(tokens) >= 3
    assert recording_signer.signing_threads[0] == threading.current_thread().name
    assert all(name.startswith("maskinporten-fetch") for name in recording_signer.signing_threads[1:])
    assert_every_attempt_had_a_new_grant(maskinporten_emulator, recording_signer.jtis)


# Clock skew


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("offset", [-600.0, -45.0, 45.0, 600.0], ids=["behind-10min", "behind", "ahead", "ahead-10min"])
def test_a_skewed_clock_is_corrected_once_and_stays_corrected(
    offset, mode, make_auth, maskinporten_emulator, recording_signer
):
    maskinporten_emulator.clock_offset = offset
    auth = make_auth()
    first = get_token(auth, mode)
    rejected, accepted = maskinporten_emulator.grants
    assert (rejected.status, rejected.code) == (400, "MP-130")
    assert abs(accepted.claims["iat"] - maskinporten_emulator.now()) <= 10
    assert auth._rejected(first)  # as a 401 from the API would
    assert get_token(auth, mode) != first
    assert len(maskinporten_emulator.grants) == 3  # the correction stuck: no second rejection
    assert_every_attempt_had_a_new_grant(maskinporten_emulator, recording_signer.jtis)


def test_a_small_skew_needs_no_correction(make_auth, maskinporten_emulator):
    maskinporten_emulator.clock_offset = -5.0
    assert make_auth().get_token()
    assert len(maskinporten_emulator.grants) == 1


def test_clock_skew_is_retried_once_only(make_auth, maskinporten_emulator, recording_signer):
    maskinporten_emulator.clock_offset = 45.0
    # Every answer's Date claims a further 45 s of skew: the client corrects once and then gives up.
    maskinporten_emulator.inject_fault(headers={"Date": email.utils.formatdate(time.time() + 90, usegmt=True)}, times=5)
    error, _ = timed(make_auth(retry=RetryPolicy(attempts=5)).get_token)
    assert isinstance(error, ClockSkewError)
    assert len(maskinporten_emulator.grants) == 2
    assert_every_attempt_had_a_new_grant(maskinporten_emulator, recording_signer.jtis)


# Fork safety


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork on this platform")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Python 3.12+ warns about fork with threads
def test_a_forked_child_gets_its_own_token_while_the_parent_fetch_is_in_flight(
    make_auth, maskinporten_emulator, recording_signer
):
    auth = make_auth()
    entered, release = recording_signer.hold_next()
    parent_tokens: list[str] = []
    fetcher = threading.Thread(target=lambda: parent_tokens.append(auth.get_token()))
    fetcher.start()
    assert entered.wait(10)  # the parent's fetch is in flight, held in the signer
    try:  # the child must not wait for the parent's flight, which will never finish there
        child_token = token_from_forked_child(auth.get_token)
    finally:
        release.set()
        fetcher.join(timeout=10)
    assert len(parent_tokens) == 1 and parent_tokens[0] != child_token
    assert maskinporten_emulator.tokens_issued == 2
    assert maskinporten_emulator.reused_jtis == []
