"""The two token issuers, Maskinporten's token endpoint and Altinn's token exchange, over one bounded HTTP path.

A fetch runs in one thread from its first attempt to its last (the caller's, or a worker's for an asyncio caller),
through :func:`with_retries`: network errors, 5xx, 429 (after ``Retry-After``) and garbled answers are tried again
until the retry policy's attempts or deadline run out; any other answer is final.

Each attempt is one request through an ``httpx.Client``'s ``send``, never redirected: a 3xx is an answer like any
other, and a grant goes to the configured token endpoint only. The answer is read as a stream, capped at
:data:`MAX_BODY_BYTES`, and the attempt's deadline is checked between chunks, so a server that drips its body is
cut off at the deadline. An answer that stalls past the deadline wherever it stalls (a server that drips its
headers) is cut off too: on the family's own client a watchdog closes its connections under it; an application's
``http_client`` is not ours to close, so there the exchange runs in a thread of its own that the fetch leaves
behind at the deadline.
The request asks for an uncompressed answer, and any ``Content-Encoding`` but identity is an invalid answer.

Every 200 answer of either issuer is read by one guarded parser (:func:`_token_answer`), which ends in a token or a
typed error, never in a bare ``RecursionError`` or ``OverflowError``.
"""

from __future__ import annotations

import concurrent.futures
import contextvars
import email.utils
import heapq
import json
import logging
import math
import re
import reprlib
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from . import forksafe
from .checks import is_finite_number
from .environment import Environment, validate_url
from .errors import (
    AltinnExchangeError,
    ClockSkewError,
    ConfigurationError,
    InvalidResponseError,
    NetworkError,
    RateLimitedError,
    ServerError,
    TokenRequestError,
    quoted,
)
from .grant import GrantBuilder, SigningKey
from .mp_codes import UNKNOWN_KID, explain, hint_for, mp_code, refusal_error
from .retry import RetryPolicy

__all__ = [
    "EXCHANGE_PATH",
    "GRANT_TYPE",
    "MAX_BODY_BYTES",
    "PLATFORMS",
    "AltinnExchange",
    "GrantClock",
    "HttpPath",
    "TokenEndpoint",
    "TokenResponse",
    "error_from_response",
    "http_date",
    "parse_token_response",
    "platform_url",
    "with_retries",
]

logger = logging.getLogger("maskinporten_auth")

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
#: The most bytes of a token answer read from the network. A token response is a few kilobytes.
MAX_BODY_BYTES = 256 * 1024
#: The longest lifetime believed of a token, from either issuer.
_MAX_LIFETIME = 24 * 3600
#: RFC 6750 §2.1 b64token: what a Bearer token may hold, so that it can go into an Authorization header as it is.
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_REQUEST_HEADERS = {"Accept": "application/json", "Accept-Encoding": "identity"}
_DEADLINE_PASSED = "the attempt's deadline passed before the whole answer arrived"

#: Altinn's platform base URL per environment; TT02 is linked to Maskinporten's test environment.
PLATFORMS = {"tt02": "https://platform.tt02.altinn.no", "prod": "https://platform.altinn.no"}
EXCHANGE_PATH = "/authentication/api/v1/exchange/maskinporten"


@dataclass(frozen=True)
class TokenResponse:
    """A token an issuer gave, and its lifetime in seconds. ``access_token`` is left out of the repr."""

    access_token: str = field(repr=False)
    expires_in: float


# Dates and clocks


def http_date(value: str | None) -> float | None:
    """The seconds since the epoch an HTTP date (``Date``, ``Retry-After``) names, or None if it names none."""
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _retry_after(response: httpx.Response) -> float | None:
    """The answer's ``Retry-After`` in seconds from now (seconds or an HTTP date), or None."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds: float | None = float(value)
    except ValueError:
        moment = http_date(value)
        seconds = None if moment is None else moment - time.time()
    return max(0.0, seconds) if seconds is not None and math.isfinite(seconds) else None


class GrantClock:
    """Tells the time to put in ``iat``.

    Every answer of the token endpoint updates :attr:`estimated_offset` (server time minus local time, from its
    ``Date`` header). The estimate is applied (:attr:`offset`) only once Maskinporten has rejected a grant for its
    timing, so a wrong ``Date`` from some proxy cannot break a working clock.
    """

    #: Below this, an estimate from a one-second-resolution Date header is noise.
    SIGNIFICANT_SKEW = 2.0

    def __init__(self) -> None:
        self.estimated_offset: float | None = None
        self.offset = 0.0

    def now(self) -> float:
        """Seconds since the epoch, as Maskinporten's clock would say."""
        return time.time() + self.offset

    def observe(self, date_header: str | None, sent_at: float, received_at: float) -> None:
        """Update the estimate from an answer's ``Date`` header (wall times of sending and receiving)."""
        server = http_date(date_header)
        if server is not None:
            # Date is truncated to the second: its true value lies in [server, server + 1).
            self.estimated_offset = server + 0.5 - (sent_at + received_at) / 2

    def correct(self) -> bool:
        """Apply the estimated offset; return whether that changes the clock significantly."""
        if self.estimated_offset is None or abs(self.estimated_offset - self.offset) < self.SIGNIFICANT_SKEW:
            return False
        logger.warning(
            "the local clock is %.1f s off Maskinporten's; correcting the grant's iat/exp (synchronise with NTP)",
            -self.estimated_offset,
        )
        self.offset = self.estimated_offset
        return True


# The HTTP path


#: How long past an attempt's deadline a fetch waits for a stalled answer before it gives up on it.
_STALL_GRACE = 0.25


class _Watch:
    """A callback due at a deadline unless cancelled first."""

    __slots__ = ("callback", "cancelled", "deadline", "fired")

    def __init__(self, deadline: float, callback: Callable[[], None]) -> None:
        self.deadline, self.callback = deadline, callback
        self.cancelled = self.fired = False

    def __lt__(self, other: _Watch) -> bool:
        return self.deadline < other.deadline

    def cancel(self) -> None:
        self.cancelled = True


class _Watchdog:
    """One daemon thread that runs the callbacks of watches that reach their deadline uncancelled."""

    def __init__(self) -> None:
        self._due: list[_Watch] = []
        self._wake = threading.Condition()
        self._running = False
        forksafe.register(self)

    def watch(self, deadline: float, callback: Callable[[], None]) -> _Watch:
        """Run ``callback()`` at monotonic ``deadline`` unless the returned watch is cancelled first."""
        watch = _Watch(deadline, callback)
        with self._wake:
            heapq.heappush(self._due, watch)
            if not self._running:
                self._running = True
                threading.Thread(target=self._run, name="maskinporten-watchdog", daemon=True).start()
            elif self._due[0] is watch:
                self._wake.notify()
        return watch

    def _run(self) -> None:
        with self._wake:
            while self._due:
                watch = self._due[0]
                if watch.cancelled:
                    heapq.heappop(self._due)
                elif watch.deadline > time.monotonic():
                    self._wake.wait(watch.deadline - time.monotonic())
                else:
                    heapq.heappop(self._due)
                    watch.fired = True
                    watch.callback()  # closing a client: quick, and never raises
            self._running = False

    def _after_fork(self) -> None:
        self.__init__()  # type: ignore[misc]  # the parent's thread does not exist in the child


_watchdog = _Watchdog()


class HttpPath:
    """How a token source sends: the application's ``httpx.Client``, or a pooled one of its own.

    Its own client is made on first use and keeps up to ``max_connections`` connections alive, so that every fetch
    of an auth family, from any thread, reuses connections and TLS sessions; it honours ``HTTPS_PROXY``,
    ``NO_PROXY`` and ``SSL_CERT_FILE`` as httpx does. The application's client is used as it is and never closed.
    """

    def __init__(self, given: httpx.Client | None, *, timeout: float, max_connections: int) -> None:
        self._client = given
        self._owned = given is None
        self._timeout = timeout
        self._limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self._lock = threading.Lock()
        forksafe.register(self)

    def client(self) -> httpx.Client:
        """The client, made now if needed."""
        client = self._client
        if client is None:
            with self._lock:
                if self._client is None:
                    self._client = httpx.Client(timeout=self._timeout, follow_redirects=False, limits=self._limits)
                client = self._client
        return client

    def send(
        self,
        method: str,
        url: str,
        timeout: float,
        *,
        data: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send one request; its whole answer must arrive within ``timeout`` seconds and :data:`MAX_BODY_BYTES`.

        Returns the answer with its body read (a 3xx is returned, not followed). Raises ``httpx.TimeoutException``
        when the deadline passes, another ``httpx.HTTPError`` when the exchange fails, and
        :class:`InvalidResponseError` when the body is too large or encoded.
        """
        client = self.client()
        request = client.build_request(
            method, url, data=data, headers={**_REQUEST_HEADERS, **(headers or {})}, timeout=timeout
        )
        deadline = time.monotonic() + timeout

        def exchange() -> httpx.Response:
            response = client.send(request, stream=True, follow_redirects=False)
            try:
                return _read_bounded(response, deadline)
            finally:
                response.close()

        # httpx's timeouts bound each read, not a whole answer. Under an answer that stalls past the deadline, a
        # watchdog closes the family's own connections; an application's client is not ours to close, so there
        # the exchange runs in a thread of its own, which the fetch leaves behind at the deadline.
        if self._owned:
            watch = _watchdog.watch(deadline + _STALL_GRACE, lambda: self._cut(client))
            try:
                return exchange()
            except httpx.TransportError:
                if watch.fired:
                    raise httpx.ReadTimeout(_DEADLINE_PASSED, request=request) from None
                raise
            finally:
                watch.cancel()
        answer: concurrent.futures.Future[httpx.Response] = concurrent.futures.Future()

        def in_thread() -> None:
            try:
                answer.set_result(exchange())
            except BaseException as exc:  # handed to the fetch, if it still waits
                answer.set_exception(exc)

        threading.Thread(target=contextvars.copy_context().run, args=(in_thread,), daemon=True).start()
        try:
            return answer.result(timeout + _STALL_GRACE)
        except concurrent.futures.TimeoutError:
            raise httpx.ReadTimeout(_DEADLINE_PASSED, request=request) from None

    def _cut(self, client: httpx.Client) -> None:
        """Close ``client`` (the next request opens another): an answer on it has stalled past its deadline."""
        with self._lock:
            if self._client is client:
                self._client = None
        client.close()

    def close(self) -> None:
        """Close its own client (a later request makes a new one); the application's stays open."""
        if self._owned and self._client is not None:
            client, self._client = self._client, None
            client.close()

    def _after_fork(self) -> None:
        # The connections are the parent's: drop them without closing.
        if self._owned:
            self._client = None
        self._lock = threading.Lock()


def _read_bounded(response: httpx.Response, deadline: float) -> httpx.Response:
    """The answer with its whole body, read within ``deadline`` and :data:`MAX_BODY_BYTES`."""

    def invalid(problem: str) -> InvalidResponseError:
        status = response.status_code
        return InvalidResponseError(
            f"the answer (HTTP {status}) from {response.request.url.host} is unusable: {problem}", status=status
        )

    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise invalid(f"it is encoded ({encoding[:40]!r}), though the request asked for identity")
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise invalid(f"the body is larger than a token response can be (it declares {int(declared)} bytes)")
    chunks: list[bytes] = []
    size = 0
    for chunk in (response.content,) if response.is_stream_consumed else response.iter_raw():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise invalid(f"the body is larger than a token response can be (over {MAX_BODY_BYTES} bytes)")
        if time.monotonic() > deadline:
            raise httpx.ReadTimeout(_DEADLINE_PASSED, request=response.request)
        chunks.append(chunk)
    return httpx.Response(
        response.status_code, headers=response.headers, content=b"".join(chunks), request=response.request
    )


def _typed(exc: TokenRequestError | httpx.HTTPError, target: str) -> TokenRequestError:
    """``exc`` as a :class:`TokenRequestError`: a typed one unchanged, an httpx failure as a retryable NetworkError."""
    if isinstance(exc, TokenRequestError):
        return exc
    kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "failed"
    # httpx messages name the URL and the OS error, never the request's body or headers (the grant, a token).
    return NetworkError(f"the request to {target} {kind}: {type(exc).__name__}: {exc}")


def with_retries(
    policy: RetryPolicy,
    attempt: Callable[[float], TokenResponse],
    target: str,
    recover: Callable[[TokenRequestError], bool] = lambda error: False,
) -> TokenResponse:
    """Run ``attempt(timeout)`` until it returns, retrying by ``policy``; raise the last error when retries end.

    ``recover(error)`` is asked first after each failure: True means the cause is dealt with (a clock corrected, a
    token renewed) and the next attempt starts at once, without counting as a retry.
    """
    schedule = policy.start()
    while True:
        try:
            return attempt(schedule.attempt_timeout())
        except (TokenRequestError, httpx.HTTPError) as exc:
            error = _typed(exc, target)
        if recover(error):
            continue
        delay = schedule.delay_after(error)
        logger.debug("%s failed (%s); attempt %d in %.2f s", target, _brief(error), schedule.attempt + 1, delay)
        time.sleep(delay)


def _brief(error: TokenRequestError) -> str:
    return " ".join(str(part) for part in (type(error).__name__, error.status, error.code) if part)


# Reading answers


def _token_answer(response: httpx.Response, parse: Callable[[httpx.Response], TokenResponse]) -> TokenResponse:
    """``parse(response)``, which can only end in a token or a typed error, whatever the issuer sent."""
    try:
        return parse(response)
    except TokenRequestError:
        raise
    except (ValueError, TypeError, RecursionError, OverflowError) as exc:  # JSON too deep, numbers too large
        raise InvalidResponseError(
            f"the answer (HTTP {response.status_code}) could not be read as a token ({type(exc).__name__})",
            status=response.status_code,
        ) from None


def _checked_token(token: object, status: int) -> str:
    """``token`` if it is a bearer token that can go into an Authorization header as it is."""
    if not isinstance(token, str) or not token:
        raise InvalidResponseError("the answer has no access token", status=status)
    if not _B64TOKEN.fullmatch(token):
        # The token itself is never quoted: it is a secret, and its bad characters could forge log lines.
        raise InvalidResponseError(
            "the access token is not an RFC 6750 b64token: it holds characters (control characters, spaces or "
            "non-ASCII) that cannot go into an Authorization header",
            status=status,
        )
    return token


def _checked_lifetime(lifetime: float, status: int) -> float:
    if not 0 < lifetime <= _MAX_LIFETIME:
        raise InvalidResponseError(f"the token's lifetime, {lifetime:.0f} s, is not within (0, 24 h]", status=status)
    return lifetime


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        body = json.loads(response.content)
    except (ValueError, RecursionError):  # RecursionError: JSON nested deeper than the interpreter's stack
        return None
    return body if isinstance(body, dict) else None


def _content_kind(response: httpx.Response) -> str:
    kind = response.headers.get("content-type", "no content type").split(";")[0]
    return f"{kind}, {len(response.content)} bytes"


def parse_token_response(response: httpx.Response) -> TokenResponse:
    """The token in a 200 answer of the token endpoint, or :class:`InvalidResponseError`."""
    return _token_answer(response, _maskinporten_token)


def _maskinporten_token(response: httpx.Response) -> TokenResponse:
    status = response.status_code
    body = _json_object(response)
    if body is None:
        raise InvalidResponseError(
            f"the token endpoint answered {status} with a body that is not a JSON object ({_content_kind(response)})",
            status=status,
        )
    token = _checked_token(body.get("access_token"), status)
    token_type = body.get("token_type", "Bearer")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        raise InvalidResponseError(f"the token type is {token_type!r}, not Bearer", status=status)
    expires_in = body.get("expires_in")
    if not is_finite_number(expires_in):
        raise InvalidResponseError(
            f"the token response has an invalid expires_in: {reprlib.repr(expires_in)}", status=status
        )
    assert isinstance(expires_in, (int, float))
    return TokenResponse(token, _checked_lifetime(float(expires_in), status))


def error_from_response(
    response: httpx.Response, environment: Environment | None = None, *, grant: str | None = None
) -> TokenRequestError:
    """The typed exception of a non-200 answer from the token endpoint (of ``environment``, if known).

    The status decides a redirect, 429 and 5xx; any other answer is explained by :mod:`maskinporten_auth.mp_codes`.
    Maskinporten's words are kept on one line, and ``grant`` (the grant sent) or anything else token-like in them is
    blanked out, in case an endpoint quotes what it was sent.
    """
    status = response.status_code
    body = _json_object(response) or {}
    error = " ".join(body["error"].split())[:100] if isinstance(body.get("error"), str) else None
    said = body.get("error_description") if isinstance(body.get("error_description"), str) else None
    error_uri = body.get("error_uri") if isinstance(body.get("error_uri"), str) else None
    code = mp_code(error_uri, said)
    hint = hint_for(code, said, error)
    description = None if said is None else quoted(said, secret=grant, limit=1000)
    details: dict[str, Any] = {"status": status, "error": error, "code": code, "description": description}
    if 300 <= status < 400:
        location = response.headers.get("location")
        return TokenRequestError(
            f"the token endpoint answered with a redirect (HTTP {status}"
            + (f" to {reprlib.repr(location)}" if location else "")
            + "), which is never followed: the grant goes to the configured token endpoint only",
            hint="set the environment's token_endpoint to the address Maskinporten documents",
            **details,
        )
    if status == 429 or status >= 500:
        return _unavailable(response, "Maskinporten", hint=hint, **details)
    if error is None:
        return TokenRequestError(
            f"the token endpoint answered HTTP {status} without an OAuth error ({_content_kind(response)}); "
            "check the environment's token_endpoint",
            hint=hint,
            **details,
        )
    where = (
        None
        if environment is None
        else f"Maskinporten's {environment.name or 'custom'} environment ({environment.issuer})"
    )
    return refusal_error(status, error, code, description, environment=where)


class _Issuer:
    """What both issuers have: a retry policy, an HTTP path, and a slot per fetch in flight."""

    #: What log lines and events call the issuer's tokens.
    name: str

    def __init__(self, retry: RetryPolicy, http_client: httpx.Client | None, max_in_flight: int) -> None:
        self.retry = retry
        self.http = HttpPath(http_client, timeout=retry.timeout, max_connections=max_in_flight)
        #: One per fetch in flight (held by the provider): at most ``max_in_flight`` requests at this issuer at once.
        self.slots = threading.BoundedSemaphore(max_in_flight)
        self._max_in_flight = max_in_flight
        forksafe.register(self)

    def close(self) -> None:
        """Close the connections this issuer opened (an ``http_client`` given to it stays open)."""
        self.http.close()

    def _after_fork(self) -> None:
        # The parent's fetches held slots that no thread in the child will release.
        self.slots = threading.BoundedSemaphore(self._max_in_flight)


def _unavailable(response: httpx.Response, issuer: str, **details: Any) -> TokenRequestError:
    """A 429, or a 5xx (a 503 with ``Retry-After`` counts as rate limiting): worth another attempt, after a while."""
    status = response.status_code
    if status == 429 or (status == 503 and "retry-after" in response.headers):
        state = "rate limiting" if status == 429 else "unavailable"
        return RateLimitedError(f"{issuer} is {state}", retry_after=_retry_after(response), **details)
    return ServerError(f"{issuer} failed with HTTP {status}", **details)


def _is_unknown_kid(error: TokenRequestError) -> bool:
    found = explain(error.code, error.description, error.error)
    return found is not None and found.key == UNKNOWN_KID


class TokenEndpoint(_Issuer):
    """Maskinporten's token endpoint in one environment: posts a new grant for every attempt, retrying as it should.

    While a replaced signing key propagates (:meth:`~maskinporten_auth.MaskinportenAuth.replace_signer`), a grant
    Maskinporten refuses for its unknown kid is signed again with the previous key.
    """

    name = "maskinporten"

    def __init__(
        self,
        environment: Environment,
        *,
        retry: RetryPolicy | None = None,
        http_client: httpx.Client | None = None,
        max_in_flight: int = 32,
    ) -> None:
        super().__init__(retry or RetryPolicy(), http_client, max_in_flight)
        self.environment = environment
        self.clock = GrantClock()

    @property
    def deadline(self) -> float:
        """Seconds after which a fetch has given up: the retry policy's deadline."""
        return self.retry.deadline

    def obtain(self, grants: GrantBuilder) -> TokenResponse:
        """A new token for ``grants``' claims (blocking; never call it on an event loop)."""
        key: SigningKey = grants.keys.current
        corrected = False

        def attempt(timeout: float) -> TokenResponse:
            token_endpoint = self._token_endpoint(timeout)
            grant = grants.build(self.clock.now(), key)
            sent_at = time.time()
            response = self.http.send(
                "POST", token_endpoint, timeout, data={"grant_type": GRANT_TYPE, "assertion": grant}
            )
            self.clock.observe(response.headers.get("date"), sent_at, time.time())
            if response.status_code == 200:
                return parse_token_response(response)
            raise error_from_response(response, self.environment, grant=grant)

        def recover(error: TokenRequestError) -> bool:
            nonlocal key, corrected
            if isinstance(error, ClockSkewError) and not corrected:
                corrected = True
                return self.clock.correct()
            previous = grants.keys.previous
            if previous is not None and key is not previous and _is_unknown_kid(error):
                logger.warning("Maskinporten does not know the new key's kid yet; signing with the previous key")
                key = previous
                return True
            return False

        return with_retries(self.retry, attempt, "Maskinporten's token endpoint", recover)

    def _token_endpoint(self, timeout: float) -> str:
        """The token endpoint, read from the issuer's metadata the first time when the environment names none."""
        self.environment = self.environment.resolved(client=self.http.client(), timeout=timeout)
        assert self.environment.token_endpoint is not None
        return self.environment.token_endpoint


# Altinn's token exchange


def platform_url(environment: object) -> str:
    """Altinn's platform base URL for ``"tt02"``, ``"prod"``, or a base URL (https; http only on loopback)."""
    if isinstance(environment, str) and environment.strip().lower() in PLATFORMS:
        return PLATFORMS[environment.strip().lower()]
    if isinstance(environment, str) and environment.startswith(("https://", "http://")):
        return validate_url(environment, "environment").rstrip("/")
    raise ConfigurationError(
        "environment", f"must be 'tt02', 'prod' or Altinn's platform base URL, got {environment!r}"
    )


_HINT_401 = (
    "Altinn did not accept the Maskinporten token: tt02 takes tokens from Maskinporten's test environment and prod "
    "from prod, and the token must carry a scope Altinn knows (an altinn: scope or the API's own)"
)
_HINT_403 = "Altinn refused this organisation the exchange (with test=True: the client may not act for TTD)"


class MaskinportenTokens(Protocol):
    """Where an exchange gets the Maskinporten token it exchanges: a :class:`~maskinporten_auth.MaskinportenAuth`."""

    def get_token(self) -> str:
        """A valid Maskinporten token."""
        ...

    def _rejected(self, token: str) -> bool:
        """``token`` was rejected with 401: whether a renewed one may be tried."""
        ...


def _altinn_token(response: httpx.Response) -> TokenResponse:
    """The Altinn token in a 200 answer (the JWT as the body, bare or as a JSON string), with its lifetime."""
    from .jws import CompactJws, MalformedJws  # here: a family that never exchanges need not load the JWS machinery

    text: object = response.text.strip()
    if isinstance(text, str) and text.startswith('"'):
        text = json.loads(text)
    try:
        claims = CompactJws.parse(text).claims if isinstance(text, str) else {}
    except MalformedJws:
        claims = {}
    expires = claims.get("exp")
    if not is_finite_number(expires):
        # The body is never quoted: it may be a token.
        raise InvalidResponseError(
            f"Altinn's token exchange answered 200 without a JWT with an exp claim ({_content_kind(response)})",
            status=200,
        )
    assert isinstance(expires, (int, float))
    server_now = http_date(response.headers.get("date")) or time.time()
    return TokenResponse(_checked_token(text, 200), _checked_lifetime(float(expires) - server_now, 200))


def _problem(response: httpx.Response, secret: str) -> str | None:
    """The exchange's own explanation of a failure (an RFC 9457 problem's detail or title), briefly.

    Anything that looks like a token (and ``secret``, the Maskinporten token sent) is blanked out.
    """
    body = _json_object(response) or {}
    text = next(
        (body[name] for name in ("detail", "title", "error_description") if isinstance(body.get(name), str)), None
    )
    return None if text is None else quoted(text, secret=secret)


def _exchange_error(response: httpx.Response, maskinporten_token: str) -> TokenRequestError:
    status = response.status_code
    if status == 429 or status >= 500:
        return _unavailable(response, "Altinn's token exchange", status=status)
    return AltinnExchangeError(
        f"Altinn's token exchange refused the Maskinporten token with HTTP {status}",
        status=status,
        description=_problem(response, maskinporten_token),
        hint=_HINT_401 if status == 401 else _HINT_403 if status == 403 else None,
    )


class AltinnExchange(_Issuer):
    """Altinn's exchange of Maskinporten tokens for Altinn tokens, at one platform URL.

    :meth:`obtain` gets the Maskinporten token and ``GET``s the exchange with it, retrying as the token endpoint
    does. When the exchange answers 401, the Maskinporten token is renewed (by the rule every 401 follows: once, and
    not again while a renewed token is rejected too) and the exchange tried once more.
    """

    name = "altinn"

    def __init__(
        self,
        url: str,
        *,
        retry: RetryPolicy,
        maskinporten_patience: float,
        http_client: httpx.Client | None = None,
        max_in_flight: int = 32,
    ) -> None:
        super().__init__(retry, http_client, max_in_flight)
        self.url = url
        self._maskinporten_patience = maskinporten_patience

    @property
    def deadline(self) -> float:
        """Seconds after which :meth:`obtain` has given up: the Maskinporten token's wait, then the exchange's."""
        return self._maskinporten_patience + self.retry.deadline

    def obtain(self, tokens: MaskinportenTokens) -> TokenResponse:
        """Exchange the Maskinporten token of ``tokens`` for an Altinn token (blocking)."""
        sent: list[str] = []
        renewed = False

        def attempt(timeout: float) -> TokenResponse:
            sent.append(tokens.get_token())
            response = self.http.send("GET", self.url, timeout, headers={"Authorization": f"Bearer {sent[-1]}"})
            if response.status_code == 200:
                return _token_answer(response, _altinn_token)
            raise _exchange_error(response, sent[-1])

        def recover(error: TokenRequestError) -> bool:
            nonlocal renewed
            if error.status != 401 or renewed:
                return False
            renewed = True
            return tokens._rejected(sent[-1])

        return with_retries(self.retry, attempt, "Altinn's token exchange", recover)
