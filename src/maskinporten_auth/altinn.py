"""AltinnAuth: ``auth=`` for Altinn APIs, with the Maskinporten token exchanged for an Altinn token.

APIs hosted on Altinn 3 (and Altinn's own: authorized parties, correspondence, dialogporten) want an Altinn token.
:class:`AltinnAuth` gets the Maskinporten token of the :class:`~maskinporten_auth.MaskinportenAuth` it wraps, ``GET``s
``{platform}/authentication/api/v1/exchange/maskinporten`` with it as bearer (maskinporten-protocol.md §7) and caches
the Altinn token by its own ``exp``, through the same token provider as Maskinporten tokens: the same refresh policy,
single flight, bounded cache, in-flight limit and refusal memory.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import re
import time
from typing import TYPE_CHECKING

import httpx

from .auth import BearerAuth, MaskinportenAuth
from .environment import validate_url
from .errors import (
    AltinnExchangeError,
    ConfigurationError,
    InvalidResponseError,
    RateLimitedError,
    ServerError,
    TokenRequestError,
)
from .jws import CompactJws, MalformedJws
from .provider import TokenProvider
from .retry import RetryPolicy, is_finite_number
from .token_client import TokenResponse
from .transport import PooledClient, typed_error

if TYPE_CHECKING:
    import asyncio

__all__ = ["EXCHANGE_PATH", "PLATFORMS", "AltinnAuth", "AltinnExchange", "platform_url"]

#: Altinn's platform base URL per environment; TT02 is linked to Maskinporten's test environment.
PLATFORMS = {"tt02": "https://platform.tt02.altinn.no", "prod": "https://platform.altinn.no"}
#: The Maskinporten environment whose tokens each Altinn environment accepts.
_MASKINPORTEN_OF = {"tt02": "test", "prod": "prod"}
EXCHANGE_PATH = "/authentication/api/v1/exchange/maskinporten"
_MAX_LIFETIME = 24 * 3600
#: A JWT, or any long run of token characters, in a text the exchange sent back.
_TOKEN_LIKE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*|[A-Za-z0-9_~+/=-]{40,}")

_HINT_401 = (
    "Altinn did not accept the Maskinporten token: tt02 takes tokens from Maskinporten's test environment and prod "
    "from prod, and the token must carry a scope Altinn knows (an altinn: scope or the API's own)"
)
_HINT_403 = "Altinn refused this organisation the exchange (with test=True: the client may not act for TTD)"


def platform_url(environment: object) -> str:
    """Altinn's platform base URL for ``"tt02"``, ``"prod"``, or a base URL (https; http only on loopback)."""
    if isinstance(environment, str) and environment.strip().lower() in PLATFORMS:
        return PLATFORMS[environment.strip().lower()]
    if isinstance(environment, str) and environment.startswith(("https://", "http://")):
        return validate_url(environment, "environment").rstrip("/")
    raise ConfigurationError(
        "environment", f"must be 'tt02', 'prod' or Altinn's platform base URL, got {environment!r}"
    )


def _server_now(response: httpx.Response) -> float:
    """The exchange's clock at its answer (its ``Date`` header), or ours when it sent none."""
    try:
        return email.utils.parsedate_to_datetime(response.headers["date"]).timestamp()
    except (KeyError, TypeError, ValueError, IndexError, OverflowError):
        return time.time()


def _altinn_token(response: httpx.Response) -> TokenResponse:
    """The Altinn token in a 200 answer (the JWT as the body, bare or as a JSON string), with its lifetime."""
    text = response.text.strip()
    if text.startswith('"'):
        try:
            text = json.loads(text)
        except ValueError:
            text = ""
    try:
        claims = CompactJws.parse(text).claims if isinstance(text, str) else {}
    except (MalformedJws, RecursionError):  # RecursionError: JSON nested deeper than the interpreter's stack
        claims = {}
    expires = claims.get("exp")
    if not is_finite_number(expires):
        # The body is never quoted: it may be a token.
        raise InvalidResponseError(
            "Altinn's token exchange answered 200 without a JWT with an exp claim "
            f"({response.headers.get('content-type', 'no content type')}, {len(response.content)} bytes)",
            status=200,
        )
    assert isinstance(expires, (int, float))
    lifetime = float(expires) - _server_now(response)
    if not 0 < lifetime <= _MAX_LIFETIME:
        raise InvalidResponseError(
            f"the Altinn token's exp is {lifetime:.0f} s from the exchange's clock, not within (0, 24 h]", status=200
        )
    assert isinstance(text, str)
    return TokenResponse(access_token=text, expires_in=lifetime)


def _problem(response: httpx.Response, secret: str) -> str | None:
    """The exchange's own explanation of a failure (an RFC 9457 problem's detail or title), briefly.

    Anything that looks like a token (and ``secret``, the Maskinporten token sent) is blanked out.
    """
    try:
        body = json.loads(response.content)
    except (ValueError, RecursionError):
        return None
    if not isinstance(body, dict):
        return None
    text = next(
        (body[name] for name in ("detail", "title", "error_description") if isinstance(body.get(name), str)), None
    )
    if text is None:
        return None
    text = _TOKEN_LIKE.sub("<token>", text.replace(secret, "<token>"))
    return " ".join(text.split())[:200]  # one line: a description never forges log lines


def _exchange_error(response: httpx.Response, maskinporten_token: str) -> TokenRequestError:
    status = response.status_code
    description = _problem(response, maskinporten_token)
    if status == 429:
        after = response.headers.get("retry-after")
        retry_after = float(after) if after is not None and after.isdigit() else None
        return RateLimitedError("Altinn's token exchange is rate limiting", status=status, retry_after=retry_after)
    if status >= 500:
        return ServerError(f"Altinn's token exchange failed with HTTP {status}", status=status)
    hint = _HINT_401 if status == 401 else _HINT_403 if status == 403 else None
    return AltinnExchangeError(
        f"Altinn's token exchange refused the Maskinporten token with HTTP {status}",
        status=status,
        description=description,
        hint=hint,
    )


class AltinnExchange:
    """The token source of an :class:`AltinnAuth` family: Altinn's exchange of Maskinporten tokens.

    :meth:`obtain` gets the wrapped view's Maskinporten token and ``GET``s the exchange with it, retrying as the
    token client does (network errors, 5xx, 429 with ``Retry-After``, garbled answers). When the exchange answers 401,
    the Maskinporten token is forgotten and the exchange tried once more with a new one. It runs in one thread from
    first attempt to last, on one pooled ``httpx.Client`` (created on first use unless ``http_client`` is given).
    """

    name = "altinn"

    def __init__(
        self,
        url: str,
        *,
        retry: RetryPolicy,
        maskinporten_patience: float,
        http_client: httpx.Client | None = None,
        max_connections: int = 32,
    ) -> None:
        self.url = url
        self.retry = retry
        self._maskinporten_patience = maskinporten_patience
        self.http = PooledClient(http_client, timeout=retry.timeout, max_connections=max_connections)

    @property
    def deadline(self) -> float:
        """Seconds after which :meth:`obtain` has given up: the Maskinporten token's wait, then the exchange's."""
        return self._maskinporten_patience + self.retry.deadline

    def obtain(self, request: MaskinportenAuth, loop: asyncio.AbstractEventLoop | None) -> TokenResponse:
        """Exchange ``request``'s Maskinporten token for an Altinn token (blocking; ``loop`` is not used)."""
        schedule = self.retry.start()
        renewed = False
        while True:
            maskinporten_token = request.get_token()
            try:
                response = self.http.send(
                    "GET",
                    self.url,
                    schedule.attempt_timeout(),
                    headers={"Authorization": f"Bearer {maskinporten_token}"},
                )
                if response.status_code == 200:
                    return _altinn_token(response)
                raise _exchange_error(response, maskinporten_token)
            except (TokenRequestError, httpx.HTTPError) as exc:
                error = typed_error(exc, "Altinn's token exchange")
            if error.status == 401 and not renewed and request._rejected(maskinporten_token):
                renewed = True
                continue
            time.sleep(schedule.delay_after(error))

    def close(self) -> None:
        """Close the HTTP client if this exchange created it."""
        self.http.close()

    def forget_connections(self) -> None:
        """Drop (without closing) the connections this exchange owns: after ``os.fork()`` they are the parent's."""
        self.http.forget()


def _cache_key(exchange_url: str, maskinporten_key: str) -> str:
    """The Altinn token's key in the family's store: one per exchange URL and Maskinporten view."""
    return hashlib.sha256(json.dumps(["altinn-exchange", exchange_url, maskinporten_key]).encode("utf-8")).hexdigest()


class AltinnAuth(BearerAuth):
    """Adds ``Authorization: Bearer <Altinn token>`` to each request: ``auth=`` for Altinn APIs.

    Wraps a :class:`~maskinporten_auth.MaskinportenAuth` (or any view of it, such as
    ``auth.with_systemuser(orgno)``): its Maskinporten token is exchanged for an Altinn token at Altinn's platform.
    One object serves ``httpx.Client``, ``httpx.AsyncClient`` and ``requests`` at once. The Altinn token is cached
    by its own ``exp`` and refreshed before it expires, one exchange at a time per view, with the wrapped family's
    refresh policy, ``on_event`` callback (events with ``source="altinn"``), in-flight limit and refusal memory,
    in the wrapped family's token store. When the API answers 401, the Altinn token and the Maskinporten token behind
    it are both fetched anew once and the request resent once.

    For many customers, make one object and views with :meth:`with_systemuser` or :meth:`with_consumer_org`: they
    share the exchange's connections and worker threads.

    Args:
        auth: the Maskinporten auth (or view) whose token is exchanged.
        environment: ``"tt02"`` (``https://platform.tt02.altinn.no``, for Maskinporten's test environment),
            ``"prod"`` (``https://platform.altinn.no``), or a platform base URL such as the emulator's ``url``.
        test: ask for a token for Altinn's test organisation (TTD): adds ``?test=true``.
        retry: how the exchange is retried; by default as the token client is (:class:`RetryPolicy`'s defaults).
        http_client: the ``httpx.Client`` that talks to Altinn's platform (proxies, custom CA).
    """

    def __init__(
        self,
        auth: MaskinportenAuth,
        environment: str = "tt02",
        *,
        test: bool = False,
        retry: RetryPolicy | None = None,
        http_client: httpx.Client | None = None,
    ) -> None:
        if not isinstance(auth, MaskinportenAuth):
            raise ConfigurationError("auth", f"must be a MaskinportenAuth, got {type(auth).__name__}")
        platform = platform_url(environment)
        if isinstance(environment, str) and environment.strip().lower() in _MASKINPORTEN_OF:
            expected = _MASKINPORTEN_OF[environment.strip().lower()]
            if auth.environment.name in _MASKINPORTEN_OF.values() and auth.environment.name != expected:
                raise ConfigurationError(
                    "environment",
                    f"Altinn's {environment!r} takes tokens from Maskinporten's {expected!r} environment, but the "
                    f"auth is for {auth.environment.name!r}",
                )
        if not isinstance(test, bool):
            raise ConfigurationError("test", f"must be True or False, got {test!r}")
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise ConfigurationError("retry", "must be a RetryPolicy")
        if http_client is not None and not isinstance(http_client, httpx.Client):
            raise ConfigurationError("http_client", f"must be an httpx.Client, got {type(http_client).__name__}")
        family = auth._provider
        exchange = AltinnExchange(
            platform + EXCHANGE_PATH + ("?test=true" if test else ""),
            retry=retry or RetryPolicy(),
            maskinporten_patience=family.patience,
            http_client=http_client,
            max_connections=family.max_in_flight,
        )
        self._provider: TokenProvider[MaskinportenAuth] = family.for_source(exchange)
        self._exchange = exchange
        self._auth = auth
        self._key = _cache_key(exchange.url, auth.cache_key)

    def _view(self, auth: MaskinportenAuth) -> AltinnAuth:
        """Another member of this family: the same exchange and provider, another Maskinporten view."""
        view = type(self).__new__(type(self))
        view._provider, view._exchange, view._auth = self._provider, self._exchange, auth
        view._key = _cache_key(self._exchange.url, auth.cache_key)
        return view

    @property
    def auth(self) -> MaskinportenAuth:
        """The Maskinporten auth (view) whose token is exchanged."""
        return self._auth

    @property
    def exchange_url(self) -> str:
        """The exchange endpoint, e.g. ``https://platform.tt02.altinn.no/authentication/api/v1/exchange/maskinporten``."""
        return self._exchange.url

    def with_systemuser(self, orgno: str, external_ref: str | None = None) -> AltinnAuth:
        """A view for the Altinn system user of customer ``orgno``: see :meth:`MaskinportenAuth.with_systemuser`."""
        return self._view(self._auth.with_systemuser(orgno, external_ref))

    def with_consumer_org(self, consumer_org: str) -> AltinnAuth:
        """A view acting for a customer through delegation: see :meth:`MaskinportenAuth.with_consumer_org`."""
        return self._view(self._auth.with_consumer_org(consumer_org))

    def get_token(self) -> str:
        """Return a valid Altinn token (cached, or exchanged now)."""
        return self._provider.get_token(self._auth, self._key)

    async def aget_token(self) -> str:
        """Return a valid Altinn token without blocking the event loop."""
        return await self._provider.aget_token(self._auth, self._key)

    def _rejected(self, token: str) -> bool:
        held = self._auth.cache.get(self._auth.cache_key)
        if not self._provider.reject(self._auth, self._key, token):
            return False
        if held is not None and self.cache.get(self._key) is None:
            # The caller that dropped the rejected Altinn token also renews the Maskinporten token behind it.
            self._auth._rejected(held.value)
        return True

    def _forget_refusals(self) -> None:
        """Forget the remembered refusals of the Altinn token and of the Maskinporten token behind it."""
        super()._forget_refusals()
        self._auth._forget_refusals()

    def __repr__(self) -> str:
        return f"AltinnAuth(exchange={self._exchange.url!r}, auth={self._auth!r})"
