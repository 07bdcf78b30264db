"""The auth adapters: ``auth=`` for httpx (sync and async) and requests, with Maskinporten and Altinn tokens.

:class:`MaskinportenAuth` adds a Maskinporten access token to each request; :class:`AltinnAuth` exchanges it for an
Altinn token first. Both are thin: the token comes from the family's
:class:`~maskinporten_auth.provider.TokenProvider`, and what they add is the 401 rule (:class:`BearerAuth`).
"""

from __future__ import annotations

import abc
import copy
import functools
import hashlib
import json
from collections.abc import AsyncGenerator, Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from .cache import RefreshPolicy, TokenCache, TokenStore
from .checks import validate_count, validate_seconds
from .endpoints import EXCHANGE_PATH, AltinnExchange, TokenEndpoint, platform_url
from .environment import Environment, resolve_environment
from .errors import ConfigurationError, TokenRequestError
from .grant import (
    DEFAULT_GRANT_LIFETIME,
    GrantBuilder,
    GrantClaims,
    SigningKeys,
    consent_authorization,
    systemuser_authorization,
)
from .provider import DEFAULT_MAX_IN_FLIGHT, DEFAULT_REMEMBER_REFUSALS, TokenEvent, TokenProvider, TokenRequest
from .retry import RetryPolicy
from .signer import Signer

if TYPE_CHECKING:
    import requests

    from .config import EnvConfig

__all__ = ["AltinnAuth", "BearerAuth", "MaskinportenAuth", "Readiness"]


_AuthT = TypeVar("_AuthT", bound="BearerAuth")


@dataclass(frozen=True)
class Readiness:
    """The outcome of :meth:`MaskinportenAuth.check`: truthy when a token was issued.

    Attributes:
        ready: whether Maskinporten issued a token.
        code: the MP code of the refusal (``"MP-251"``), or None.
        description: Maskinporten's own text, or None.
        hint: what to do about it, in plain words, or None.
        error: the refusal as the exception :meth:`~MaskinportenAuth.get_token` raises, or None.
    """

    ready: bool
    code: str | None = None
    description: str | None = None
    hint: str | None = None
    error: TokenRequestError | None = field(default=None, repr=False, compare=False)

    def __bool__(self) -> bool:
        return self.ready

    @classmethod
    def refused(cls, error: TokenRequestError) -> Readiness:
        """The readiness that the definite answer ``error`` gives."""
        return cls(False, error.code, error.description or str(error), error.hint, error)


def _refused(error: TokenRequestError) -> Readiness:
    """The readiness a failed token request tells; a failure that is no answer (network, 5xx) is raised again."""
    if error.retryable:
        raise error
    return Readiness.refused(error)


class BearerAuth(httpx.Auth, abc.ABC):
    """``auth=`` for httpx (sync and async) and requests that sends a cached bearer token and handles a 401.

    A token is sent only to the origin (scheme, host, port) of the request it was added to. When that origin
    answers 401, the token is renewed once and the request resent once, if its body can be sent again; a renewed
    token that is rejected too is not renewed again for a while (see
    :meth:`~maskinporten_auth.provider.TokenProvider.reject`). A 401 from another origin, such as a redirect's
    target, is returned as it is.
    """

    _provider: TokenProvider
    _request: TokenRequest

    def get_token(self) -> str:
        """Return a valid token (cached, or fetched now)."""
        return self._provider.get_token(self._request)

    async def aget_token(self) -> str:
        """Return a valid token without blocking the event loop."""
        return await self._provider.aget_token(self._request)

    def _rejected(self, token: str) -> bool:
        """The API rejected ``token`` with 401: return whether to resend the request with a renewed token."""
        return self._provider.reject(self._request, token)

    @property
    def cache(self) -> TokenStore:
        """The token store, shared by every view of this auth family."""
        return self._provider.store

    @property
    def cache_key(self) -> str:
        """The view's key in the token store, computed from configuration alone."""
        return self._request.key

    def check(self, *, fresh: bool = False) -> Readiness:
        """Whether a token is given for this view now, without raising for a refusal.

        Returns a :class:`Readiness`: truthy when ready; otherwise with the MP code, Maskinporten's description and
        a hint (a customer who has not delegated, a system user that is not set up, a scope not granted). Failures
        that say nothing about readiness (the network, the key service) raise.

        A refusal is remembered for ``remember_refusals`` seconds; ``fresh=True`` forgets it first and asks
        again (an onboarding screen's "I have delegated now, check again").
        """
        if fresh:
            self._forget_refusals()
        try:
            self.get_token()
        except TokenRequestError as exc:
            return _refused(exc)
        return Readiness(True)

    async def acheck(self, *, fresh: bool = False) -> Readiness:
        """:meth:`check` without blocking the event loop."""
        if fresh:
            self._forget_refusals()
        try:
            await self.aget_token()
        except TokenRequestError as exc:
            return _refused(exc)
        return Readiness(True)

    def _forget_refusals(self) -> None:
        """Forget the refusal remembered for this view's token, so that the next call asks again."""
        self._provider.forget_refusal(self._request.key)

    @abc.abstractmethod
    def close(self) -> None:
        """Release the connections and worker threads this auth family opened.

        An ``http_client`` given to it stays open, and so does a wrapped auth. Using the family afterwards opens
        them again.
        """

    async def aclose(self) -> None:
        """:meth:`close` without blocking the event loop."""
        import asyncio

        await asyncio.to_thread(self.close)

    def __enter__(self: _AuthT) -> _AuthT:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self: _AuthT) -> _AuthT:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # httpx

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """httpx's hook for ``httpx.Client`` (called by httpx, not by you)."""
        token = self.get_token()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if _renewable(request, response) and self._rejected(token):
            request.headers["Authorization"] = f"Bearer {self.get_token()}"
            yield request

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """httpx's hook for ``httpx.AsyncClient`` (called by httpx, not by you)."""
        token = await self.aget_token()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if _renewable(request, response) and self._rejected(token):
            request.headers["Authorization"] = f"Bearer {await self.aget_token()}"
            yield request

    # requests

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        """requests' hook: ``requests.get(url, auth=auth)``."""
        token = self.get_token()
        request.headers["Authorization"] = f"Bearer {token}"
        if request.body is None or isinstance(request.body, (bytes, str)):
            hook = _RequestsRetryOn401(self, token, _origin(str(request.url)))
            request.register_hook("response", hook)  # type: ignore[no-untyped-call]
        return request


class MaskinportenAuth(BearerAuth):
    """Adds ``Authorization: Bearer <Maskinporten access token>`` to each request.

    One object serves ``httpx.Client``, ``httpx.AsyncClient`` and ``requests`` at once, from any number of threads
    and event loops. Tokens are cached and refreshed before they expire. When the API answers 401, the token is
    refreshed once and the request resent once, if its body can be sent again.

    For a supplier with many customers, make one object and a view per customer with :meth:`with_consumer_org`
    or :meth:`with_systemuser`: the views of one object (an *auth family*) share its signer, token cache,
    connections, in-flight limit and refusal memory, and each costs about a kilobyte.

    Args:
        client_id: the integration's client id in Maskinporten.
        scopes: the scopes: a list, or a str in which whitespace or commas separate them (one per token is
            recommended).
        signer: signs the grant; a :class:`~maskinporten_auth.LocalKeySigner` or a remote key backend.
        environment: ``"test"``, ``"prod"``, an issuer URL (discovered), or an :class:`Environment`.
        consumer_org: the customer's organisation number, to act for it through Altinn delegation.
        resource: audience(s) for an audience-restricted token.
        authorization_details: RFC 9396 details, e.g. an Altinn system user
            (:func:`~maskinporten_auth.grant.systemuser_authorization`).
        pid: restrict the token to one person (national identity number).
        grant_lifetime: the grant's ``exp - iat`` in seconds (at most 120).
        retry: how the token endpoint is retried; see :class:`~maskinporten_auth.RetryPolicy`.
        refresh: when tokens are refreshed; see :class:`~maskinporten_auth.cache.RefreshPolicy`.
        background_refresh: refresh early in a background thread, so no caller waits on the signer.
        cache: the token store: a bounded :class:`~maskinporten_auth.cache.TokenCache` by default
            (:data:`~maskinporten_auth.cache.DEFAULT_MAX_ENTRIES` tokens), or any
            :class:`~maskinporten_auth.cache.TokenStore`, such as one shared by a fleet of processes.
        max_in_flight: the most token requests this auth family has at Maskinporten at once (threads and tasks).
        remember_refusals: seconds during which a customer Maskinporten refused (no delegation, a system user not
            set up, a scope not granted) gets the same error again at once, without a new request; 0 turns it off.
        http_client: the ``httpx.Client`` that talks to Maskinporten (proxies, custom CA). Without one the family
            opens its own, which honours ``HTTPS_PROXY``, ``NO_PROXY`` and ``SSL_CERT_FILE`` as httpx does. Async
            callers' fetches use it too, from a worker thread.
        on_event: a callback receiving :class:`~maskinporten_auth.TokenEvent` for metrics.
    """

    def __init__(
        self,
        client_id: str,
        scopes: str | Sequence[str],
        signer: Signer,
        environment: str | Environment = "test",
        consumer_org: str | None = None,
        resource: str | Sequence[str] | None = None,
        *,
        authorization_details: Sequence[Mapping[str, Any]] | None = None,
        pid: str | None = None,
        grant_lifetime: int = DEFAULT_GRANT_LIFETIME,
        retry: RetryPolicy | None = None,
        refresh: RefreshPolicy | None = None,
        background_refresh: bool = False,
        cache: TokenStore | None = None,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        remember_refusals: float = DEFAULT_REMEMBER_REFUSALS,
        http_client: httpx.Client | None = None,
        on_event: Callable[[TokenEvent], None] | None = None,
    ) -> None:
        _check_signer(signer)
        resolved = resolve_environment(environment)
        claims = GrantClaims(
            audience=resolved.issuer,
            client_id=client_id,
            scopes=scopes,
            consumer_org=consumer_org,
            resource=resource,
            authorization_details=authorization_details,
            pid=pid,
            lifetime=grant_lifetime,
        )
        _check_optional(
            ("retry", retry, RetryPolicy),
            ("refresh", refresh, RefreshPolicy),
            ("http_client", http_client, httpx.Client),
        )
        if on_event is not None and not callable(on_event):
            raise ConfigurationError("on_event", "must be callable")
        max_in_flight = validate_count(max_in_flight, "max_in_flight")
        self._endpoint = TokenEndpoint(resolved, retry=retry, http_client=http_client, max_in_flight=max_in_flight)
        self._provider = TokenProvider(
            store=cache,
            refresh=refresh,
            background_refresh=background_refresh,
            on_event=on_event,
            max_in_flight=max_in_flight,
            remember_refusals=validate_seconds(remember_refusals, "remember_refusals"),
        )
        self._set_grants(GrantBuilder(SigningKeys(signer), claims))

    def _set_grants(self, grants: GrantBuilder) -> None:
        self._grants = grants
        self._request = TokenRequest(
            grants.cache_key, grants.claims, self._endpoint, functools.partial(self._endpoint.obtain, grants)
        )

    def _view(self, claims: GrantClaims) -> MaskinportenAuth:
        """Another member of this auth family: the same provider, endpoint and keys, other claims."""
        view = copy.copy(self)
        view._set_grants(self._grants.with_claims(claims))
        return view

    @property
    def environment(self) -> Environment:
        """The Maskinporten environment.

        Given as an issuer URL, its token endpoint is read from the issuer's metadata at the first token request.
        """
        return self._endpoint.environment

    def replace_signer(self, signer: Signer) -> None:
        """Sign with ``signer`` from the next grant on, in every view of this auth family.

        Cached tokens stay (the cache key names the client, environment, scopes and customer, not the key). While
        Maskinporten does not know the new key's kid yet (a key registered in the last minutes), a grant it refuses
        for that is signed again with the replaced key. :meth:`maskinporten_auth.selfservice.SelfService.rotate`
        registers the new key and waits for it before it calls this.
        """
        _check_signer(signer)
        self._grants.keys.replace(signer)

    @classmethod
    def from_env(
        cls, prefix: str = "MASKINPORTEN_", *, environ: Mapping[str, str] | None = None, **overrides: Any
    ) -> MaskinportenAuth:
        """Build from ``MASKINPORTEN_*`` environment variables (see the README); errors name the variable.

        Args:
            prefix: the variables' prefix; give each integration its own when one process talks to several
                (``"PAYROLL_MASKINPORTEN_"``).
            environ: the variables; ``os.environ`` by default.
            **overrides: keyword arguments of ``MaskinportenAuth``; one that replaces a variable (``environment``,
                ``client_id``, ``scopes``, ``signer``, ``consumer_org``, ``resource``, ``cache``) means the
                variable is not read at all.

        Raises:
            ConfigurationError: a variable is missing or invalid; ``field`` is the variable's name.
        """
        from .config import EnvConfig

        return cls.from_config(EnvConfig(prefix, environ), **overrides)

    @classmethod
    def from_config(cls, config: EnvConfig, **overrides: Any) -> MaskinportenAuth:
        """Build from the variables ``config`` reads, as :meth:`from_env` does; errors name the variable."""
        settings = config.settings(overrides)
        with config.naming_variables(settings):
            return cls(**settings, **overrides)

    @property
    def client_id(self) -> str:
        """The integration's client id."""
        return self._grants.claims.client_id

    @property
    def scopes(self) -> tuple[str, ...]:
        """The scopes asked for."""
        return self._grants.claims.scopes

    @property
    def consumer_org(self) -> str | None:
        """The customer this auth acts for through Altinn delegation, or None."""
        return self._grants.claims.consumer_org

    @property
    def systemuser_org(self) -> str | None:
        """The customer whose Altinn system user this auth acts as, or None."""
        return self._grants.claims.systemuser_org

    @property
    def claims(self) -> GrantClaims:
        """What this view's grants ask for (read-only)."""
        return self._grants.claims

    @property
    def signer(self) -> Signer:
        """The signer of the grants."""
        return self._grants.signer

    def with_consumer_org(self, consumer_org: str) -> MaskinportenAuth:
        """Return a view that acts for another customer through Altinn delegation (``consumer_org``).

        A view is a ``MaskinportenAuth`` that shares this object's signer, token cache, connections to
        Maskinporten, in-flight limit and refusal memory; it costs about a kilobyte. Any customer this object
        named (a ``consumer_org`` or a system user) is replaced.
        """
        return self._view(self._grants.claims.for_customer(consumer_org=consumer_org))

    def with_systemuser(self, orgno: str, external_ref: str | None = None) -> MaskinportenAuth:
        """Return a view that acts as the Altinn system user (systembruker) of customer ``orgno``.

        The grant asks for ``authorization_details`` of type ``urn:altinn:systemuser`` with ``systemuser_org``
        ``0192:<orgno>`` (and ``externalRef`` when given, for a customer with several system users of your
        system). Shares everything with this object, as :meth:`with_consumer_org` does, and replaces any customer
        it named.
        """
        detail = systemuser_authorization(orgno, external_ref)
        return self._view(self._grants.claims.for_customer(systemuser=detail))

    def with_consent(self, consent_id: str, from_party: str) -> MaskinportenAuth:
        """Return a view that asks for tokens under the Altinn consent (samtykke) ``consent_id``.

        The grant asks for ``authorization_details`` of type ``urn:altinn:consent`` with the consent's ``id`` and
        ``from``: whoever consented, given as an organisation number, a national identity number or a party URN
        (:func:`~maskinporten_auth.grant.consent_authorization`). Each consent gets its own cached token. Shares
        everything with this object, as :meth:`with_consumer_org` does; a consent this object named is replaced.
        """
        return self._view(self._grants.claims.for_consent(consent_authorization(consent_id, from_party)))

    def close(self) -> None:
        """Release the connections and worker threads this auth family opened.

        An ``http_client`` given to it stays open. Using the family afterwards opens them again.
        """
        self._provider.close()
        self._endpoint.close()

    def __repr__(self) -> str:
        claims = self._grants.claims
        customer = f", consumer_org={claims.consumer_org!r}" if claims.consumer_org else ""
        if claims.systemuser_org:
            customer = f", systemuser_org={claims.systemuser_org!r}"
        return (
            f"MaskinportenAuth(client_id={claims.client_id!r}, scopes={list(claims.scopes)!r}, "
            f"environment={self.environment.name or self.environment.issuer!r}{customer}, "
            f"signer={self._grants.signer!r}{_shared_cache(self._provider.store)})"
        )


def _check_optional(*settings: tuple[str, object, type]) -> None:
    """Raise for the first (name, value, kind) whose value is neither None nor a ``kind``."""
    for name, value, kind in settings:
        if value is not None and not isinstance(value, kind):
            expected = f"{kind.__module__.split('.')[0]}.{kind.__name__}"  # httpx.Client, maskinporten_auth.RetryPolicy
            raise ConfigurationError(name, f"must be a {expected}, got {type(value).__name__}")


def _check_signer(signer: object) -> None:
    if not isinstance(signer, Signer):
        raise ConfigurationError("signer", f"must be a maskinporten_auth Signer, got {type(signer).__name__}")


def _shared_cache(store: TokenStore) -> str:
    """``, cache=...`` in a repr when the tokens are kept beyond this process."""
    return "" if isinstance(store, TokenCache) else f", cache={store!r}"


#: The Maskinporten environment whose tokens each Altinn environment accepts.
_MASKINPORTEN_OF = {"tt02": "test", "prod": "prod"}


class AltinnAuth(BearerAuth):
    """Adds ``Authorization: Bearer <Altinn token>`` to each request: ``auth=`` for Altinn APIs.

    Wraps a :class:`MaskinportenAuth` (or any view of it, such as ``auth.with_systemuser(orgno)``): its Maskinporten
    token is exchanged for an Altinn token at Altinn's platform (``GET {platform}/authentication/api/v1/exchange/
    maskinporten``). One object serves ``httpx.Client``, ``httpx.AsyncClient`` and ``requests`` at once. The Altinn
    token is cached by its own ``exp`` and refreshed before it expires, one exchange at a time per view, by the
    wrapped family's provider: its token store, refresh policy, ``on_event`` callback (events with
    ``source="altinn"``), worker threads and refusal memory. At most ``max_in_flight`` exchanges run at once. When
    the API answers 401, the Altinn token and the Maskinporten token behind it are renewed once and the request
    resent once.

    For many customers, make one object and views with :meth:`with_systemuser` or :meth:`with_consumer_org`: they
    share the exchange's connections.

    Args:
        auth: the Maskinporten auth (or view) whose token is exchanged.
        environment: ``"tt02"`` (``https://platform.tt02.altinn.no``, for Maskinporten's test environment),
            ``"prod"`` (``https://platform.altinn.no``), or a platform base URL such as the emulator's ``url``.
        test: ask for a token for Altinn's test organisation (TTD): adds ``?test=true``.
        retry: how the exchange is retried; by default as the token endpoint is (:class:`RetryPolicy`'s defaults).
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
        _check_optional(("retry", retry, RetryPolicy), ("http_client", http_client, httpx.Client))
        self._provider = auth._provider
        self._exchange = AltinnExchange(
            platform + EXCHANGE_PATH + ("?test=true" if test else ""),
            retry=retry or RetryPolicy(),
            maskinporten_patience=auth._request.patience,
            http_client=http_client,
            max_in_flight=self._provider.max_in_flight,
        )
        self._set_auth(auth)

    def _set_auth(self, auth: MaskinportenAuth) -> None:
        self._auth = auth
        key = hashlib.sha256(json.dumps(["altinn-exchange", self._exchange.url, auth.cache_key]).encode()).hexdigest()
        self._request = TokenRequest(key, auth.claims, self._exchange, functools.partial(self._exchange.obtain, auth))

    def _view(self, auth: MaskinportenAuth) -> AltinnAuth:
        """Another member of this family: the same exchange and provider, another Maskinporten view."""
        view = copy.copy(self)
        view._set_auth(auth)
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

    def _rejected(self, token: str) -> bool:
        # The caller that drops the rejected Altinn token also renews the Maskinporten token behind it.
        behind = self.cache.get(self._auth.cache_key)
        renew_behind = None if behind is None else functools.partial(self._auth._rejected, behind.value)
        return self._provider.reject(self._request, token, on_drop=renew_behind)

    def _forget_refusals(self) -> None:
        """Forget the remembered refusals of the Altinn token and of the Maskinporten token behind it."""
        super()._forget_refusals()
        self._auth._forget_refusals()

    def close(self) -> None:
        """Release the exchange's connections; the wrapped auth stays open."""
        self._exchange.close()

    def __repr__(self) -> str:
        return f"AltinnAuth(exchange={self._exchange.url!r}, auth={self._auth!r})"


def _origin(url: str) -> tuple[str, str, int | None]:
    """The origin of ``url``: scheme, host and port (the scheme's default port when none is given)."""
    parsed = httpx.URL(url)
    return parsed.scheme, parsed.host, parsed.port or {"http": 80, "https": 443}.get(parsed.scheme)


def _renewable(request: httpx.Request, response: httpx.Response) -> bool:
    """Whether a 401 may renew the token and resend ``request``.

    Only a 401 from the origin the token was added for counts: after a redirect to another host the response is
    another party's, and only a body that can be sent again is resent.
    """
    return (
        response.status_code == 401
        and _origin(str(response.request.url)) == _origin(str(request.url))
        and isinstance(request.stream, httpx.ByteStream)
    )


class _RequestsRetryOn401:
    """A requests response hook: on a 401 from the token's origin, renew the token once and resend once.

    requests copies a request's hooks onto the requests of the redirects it follows, so the hook sees the answers
    of other origins too: those are returned as they are.
    """

    def __init__(self, auth: BearerAuth, token: str, origin: tuple[str, str, int | None]) -> None:
        self._auth = auth
        self._token = token
        self._origin = origin

    def __call__(self, response: requests.Response, **send_kwargs: Any) -> requests.Response:
        if response.status_code != 401 or _origin(str(response.request.url)) != self._origin:
            return response
        if not self._auth._rejected(self._token):
            return response
        from requests.cookies import extract_cookies_to_jar

        token = self._auth.get_token()
        response.content  # noqa: B018 - read the body so the connection can be reused
        response.close()
        retry = response.request.copy()
        retry.hooks = {"response": [hook for hook in response.request.hooks["response"] if hook is not self]}
        if retry._cookies is not None:  # type: ignore[attr-defined]
            extract_cookies_to_jar(retry._cookies, response.request, response.raw)  # type: ignore[attr-defined,no-untyped-call]
            retry.prepare_cookies(retry._cookies)  # type: ignore[attr-defined]
        retry.headers["Authorization"] = f"Bearer {token}"
        resent: requests.Response = response.connection.send(retry, **send_kwargs)
        resent.history.append(response)
        resent.request = retry
        return resent
