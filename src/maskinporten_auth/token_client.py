"""The token endpoint: post a grant, read the token response, map every failure to a typed exception."""

from __future__ import annotations

import concurrent.futures
import email.utils
import json
import logging
import math
import re
import reprlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from .clock import GrantClock
from .environment import Environment
from .errors import (
    AccessDeniedError,
    AuthorizationDetailsError,
    ClockSkewError,
    DelegationError,
    InvalidGrantError,
    InvalidResponseError,
    InvalidScopeError,
    RateLimitedError,
    ServerError,
    SystemUserError,
    TokenRequestError,
    hint_for,
)
from .mp_codes import AUTHORIZATION_DETAILS_CODES, SYSTEMUSER_NOT_SET_UP, mp_code
from .retry import RetryPolicy, RetrySchedule
from .transport import PooledClient, apost_form, typed_error

if TYPE_CHECKING:
    import asyncio

    from .grant import GrantBuilder

__all__ = ["GRANT_TYPE", "TokenClient", "TokenResponse", "error_from_response", "parse_token_response"]

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_MAX_EXPIRES_IN = 24 * 3600
#: RFC 6750 §2.1 b64token: what a Bearer token may hold, so that it can go into an Authorization header as it is.
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")

logger = logging.getLogger("maskinporten_auth")


@dataclass(frozen=True)
class TokenResponse:
    """A successful token response. ``access_token`` is left out of the repr."""

    access_token: str = field(repr=False)
    expires_in: float


def parse_token_response(response: httpx.Response) -> TokenResponse:
    """Return the token in a 200 response, or raise :class:`InvalidResponseError` if it is not a valid one."""
    body = _json_object(response)
    if body is None:
        raise InvalidResponseError(
            f"the token endpoint answered 200 with a body that is not a JSON object ({_content_kind(response)})",
            status=response.status_code,
        )
    token = body.get("access_token")
    if not isinstance(token, str) or not token:
        raise InvalidResponseError("the token response has no access_token", status=response.status_code)
    if not _B64TOKEN.fullmatch(token):
        # The token itself is never quoted: it is a secret, and its bad characters could forge log lines.
        raise InvalidResponseError(
            "the access_token is not an RFC 6750 b64token: it holds characters (control characters, spaces or "
            "non-ASCII) that cannot go into an Authorization header",
            status=response.status_code,
        )
    token_type = body.get("token_type", "Bearer")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        raise InvalidResponseError(f"the token type is {token_type!r}, not Bearer", status=response.status_code)
    expires_in = body.get("expires_in")
    # The range check also rejects NaN and infinities, and never converts an int too large for a float.
    if (
        isinstance(expires_in, bool)
        or not isinstance(expires_in, (int, float))
        or not 0 < expires_in <= _MAX_EXPIRES_IN
    ):
        raise InvalidResponseError(
            f"the token response has an invalid expires_in: {reprlib.repr(expires_in)}", status=200
        )
    return TokenResponse(access_token=token, expires_in=float(expires_in))


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        body = json.loads(response.content)
    except (ValueError, RecursionError):  # RecursionError: JSON nested deeper than the interpreter's stack
        return None
    return body if isinstance(body, dict) else None


def _content_kind(response: httpx.Response) -> str:
    kind = response.headers.get("content-type", "no content type").split(";")[0]
    return f"{kind}, {len(response.content)} bytes"


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _is_clock_skew(code: str | None, description: str) -> bool:
    lowered = description.lower()
    return code == "MP-130" or "issue time" in lowered or "is expired" in lowered


def error_from_response(response: httpx.Response) -> TokenRequestError:
    """Return the typed exception for a non-200 answer from the token endpoint."""
    status = response.status_code
    body = _json_object(response) or {}
    error = body.get("error") if isinstance(body.get("error"), str) else None
    description = body.get("error_description") if isinstance(body.get("error_description"), str) else None
    error_uri = body.get("error_uri") if isinstance(body.get("error_uri"), str) else None
    code = mp_code(error_uri, description)
    details: dict[str, Any] = {
        "status": status,
        "error": error,
        "code": code,
        "description": description,
        "hint": hint_for(code, description, error),
    }
    if 300 <= status < 400:
        location = response.headers.get("location")
        return TokenRequestError(
            f"the token endpoint answered with a redirect (HTTP {status}"
            + (f" to {reprlib.repr(location)}" if location else "")
            + "), which is never followed: the grant goes to the configured token endpoint only",
            **{**details, "hint": "set the environment's token_endpoint to the address Maskinporten documents"},
        )
    if status == 429:
        return RateLimitedError("Maskinporten is rate limiting", retry_after=_retry_after(response), **details)
    if status >= 500:
        if status == 503 and response.headers.get("retry-after") is not None:
            return RateLimitedError("Maskinporten is unavailable", retry_after=_retry_after(response), **details)
        return ServerError(f"Maskinporten failed with HTTP {status}", **details)
    if error == SYSTEMUSER_NOT_SET_UP:
        return SystemUserError("Maskinporten found no system user set up as the grant asks", **details)
    if error == "invalid_authorization_details" or code in AUTHORIZATION_DETAILS_CODES:
        return AuthorizationDetailsError("Maskinporten refused the grant's authorization_details", **details)
    if error is None:
        return TokenRequestError(
            f"the token endpoint answered HTTP {status} without an OAuth error ({_content_kind(response)}); "
            "check the environment's token_endpoint",
            **details,
        )
    if error == "invalid_grant":
        if _is_clock_skew(code, description or ""):
            return ClockSkewError("Maskinporten rejected the grant's timing", **details)
        return InvalidGrantError("Maskinporten rejected the grant", **details)
    if error == "invalid_scope":
        return InvalidScopeError("Maskinporten refused the scope", **details)
    if status == 403 or error in ("forbidden", "access_denied"):
        if code == "MP-251" or "delegated" in (description or "").lower():
            return DelegationError("the customer has not delegated the scope", **details)
        return AccessDeniedError("Maskinporten denied access to the scope", **details)
    return TokenRequestError("Maskinporten refused the token request", **details)


class TokenClient:
    """Posts grants to one environment's token endpoint, retrying what is worth retrying.

    A fetch runs in one thread from its first attempt to its last: the caller's, or a worker thread for asyncio
    callers. By default every fetch goes through one pooled ``httpx.Client`` (created on first use, with up to
    ``max_connections`` kept alive), so connections and TLS sessions are reused across fetches, threads and event
    loops. ``http_client`` and ``async_http_client`` let the application bring its own transport (proxies, custom
    CA); a fetch started from an event loop posts through ``async_http_client`` on that loop when one is given.
    """

    #: What the provider calls this source in its log lines and events.
    name = "maskinporten"

    def __init__(
        self,
        environment: Environment,
        *,
        retry: RetryPolicy | None = None,
        http_client: httpx.Client | None = None,
        async_http_client: httpx.AsyncClient | None = None,
        max_connections: int = 32,
    ) -> None:
        self.environment = environment
        self.retry = retry or RetryPolicy()
        self.clock = GrantClock()
        self.http = PooledClient(http_client, timeout=self.retry.timeout, max_connections=max_connections)
        self._async_http_client = async_http_client

    @property
    def deadline(self) -> float:
        """Seconds after which a fetch has given up: the retry policy's deadline."""
        return self.retry.deadline

    def obtain(self, grants: GrantBuilder, loop: asyncio.AbstractEventLoop | None) -> TokenResponse:
        """The token source of a provider: :meth:`fetch` with a new grant from ``grants`` for every attempt."""
        return self.fetch(grants.build, loop=loop)

    def close(self) -> None:
        """Close the sync HTTP client if this TokenClient created it."""
        self.http.close()

    def forget_connections(self) -> None:
        """Drop (without closing) the connections this client owns: after ``os.fork()`` they belong to the parent."""
        self.http.forget()

    def _outcome(self, response: httpx.Response, sent_at: float) -> TokenResponse:
        self.clock.observe(response.headers.get("date"), sent_at, time.time())
        if response.status_code == 200:
            return parse_token_response(response)
        raise error_from_response(response)

    def _next_delay(self, schedule: RetrySchedule, error: TokenRequestError) -> float:
        if isinstance(error, ClockSkewError) and schedule.allow_clock_correction() and self.clock.correct():
            return 0.0
        delay = schedule.delay_after(error)
        logger.debug("token request failed (%s); attempt %d in %.2f s", _brief(error), schedule.attempt + 1, delay)
        return delay

    def fetch(
        self, make_grant: Callable[[float], str], *, loop: asyncio.AbstractEventLoop | None = None
    ) -> TokenResponse:
        """Post a new grant from ``make_grant(now)`` for every attempt until a token arrives or retries run out.

        Blocks the calling thread (never call it on an event loop). With ``loop`` (the event loop of the asyncio
        caller this fetch is for) and an ``async_http_client``, each attempt is posted through that client on
        ``loop``.
        """
        schedule = self.retry.start()
        while True:
            grant = make_grant(self.clock.now())
            sent_at = time.time()
            try:
                response = self._post(grant, schedule.attempt_timeout(), loop)
                return self._outcome(response, sent_at)
            except (TokenRequestError, httpx.HTTPError) as exc:
                error = typed_error(exc, "Maskinporten's token endpoint")
            time.sleep(self._next_delay(schedule, error))

    def _post(self, grant: str, timeout: float, loop: asyncio.AbstractEventLoop | None) -> httpx.Response:
        form = {"grant_type": GRANT_TYPE, "assertion": grant}
        if loop is None or self._async_http_client is None:
            return self.http.send("POST", self.environment.token_endpoint, timeout, data=form)
        import asyncio

        posted = asyncio.run_coroutine_threadsafe(
            apost_form(self._async_http_client, self.environment.token_endpoint, form, timeout), loop
        )
        try:
            return posted.result(timeout + 1.0)
        except concurrent.futures.TimeoutError:
            posted.cancel()
            raise httpx.TimeoutException("the event loop did not complete the request in time") from None


def _brief(error: TokenRequestError) -> str:
    return " ".join(str(part) for part in (type(error).__name__, error.status, error.code) if part)
