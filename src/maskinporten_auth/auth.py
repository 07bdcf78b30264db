"""MaskinportenAuth: ``auth=`` for httpx (sync and async) and requests."""

from __future__ import annotations

import abc
import weakref
from collections.abc import AsyncGenerator, Callable, Generator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from .cache import RefreshPolicy, TokenStore
from .environment import Environment, resolve_environment
from .errors import ConfigurationError
from .grant import DEFAULT_GRANT_LIFETIME, GrantBuilder, GrantClaims, consent_authorization, systemuser_authorization
from .provider import (
    DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_REMEMBER_REFUSALS,
    TokenEvent,
    TokenProvider,
    cache_key,
    validate_max_in_flight,
)
from .readiness import Readiness, areadiness, readiness
from .retry import RetryPolicy, validate_seconds
from .signer import Signer
from .token_client import TokenClient

if TYPE_CHECKING:
    import requests

    from .config import EnvConfig

__all__ = ["BearerAuth", "MaskinportenAuth"]


_AuthT = TypeVar("_AuthT", bound="BearerAuth")


class BearerAuth(httpx.Auth, abc.ABC):
    """``auth=`` for httpx (sync and async) and requests that sends a cached bearer token and handles a 401.

    A subclass gives the token (:meth:`get_token`, :meth:`aget_token`) and forgets a token the API rejected
    (:meth:`_rejected`). When the API answers 401, the token is forgotten, a new one obtained and the request resent
    once, if its body can be sent again.
    """

    @abc.abstractmethod
    def get_token(self) -> str:
        """Return a valid token (cached, or fetched now)."""

    @abc.abstractmethod
    async def aget_token(self) -> str:
        """Return a valid token without blocking the event loop."""

    @abc.abstractmethod
    def _rejected(self, token: str) -> bool:
        """The API rejected ``token`` with 401: return whether to resend the request with a renewed token.

        A token is renewed at most once; a renewed token that is rejected too pauses renewal (see
        :meth:`~maskinporten_auth.provider.TokenProvider.reject`).
        """

    _provider: TokenProvider[Any]
    _key: str

    @property
    def cache(self) -> TokenStore:
        """The token store, shared by every view of this auth family."""
        return self._provider.store

    @property
    def cache_key(self) -> str:
        """The view's key in the token store, computed from configuration alone."""
        return self._key

    def check(self, *, fresh: bool = False) -> Readiness:
        """Whether Maskinporten gives this view a token now, without raising for a refusal.

        Returns a :class:`~maskinporten_auth.readiness.Readiness`: truthy when ready; otherwise with the MP code,
        Maskinporten's description and a hint (a customer who has not delegated, a system user that is not set
        up, a scope not granted). Failures that say nothing about readiness (the network, the key service) raise.

        A refusal is remembered for ``remember_refusals`` seconds; ``fresh=True`` forgets it first and asks
        again (an onboarding screen's "I have delegated now, check again").
        """
        if fresh:
            self._forget_refusals()
        return readiness(self.get_token)

    async def acheck(self, *, fresh: bool = False) -> Readiness:
        """:meth:`check` without blocking the event loop."""
        if fresh:
            self._forget_refusals()
        return await areadiness(self.aget_token)

    def _forget_refusals(self) -> None:
        """Forget the refusal remembered for this view's token, so that the next call asks again."""
        self._provider.forget_refusal(self._key)

    def close(self) -> None:
        """Release the connections and worker threads this auth family opened.

        An ``http_client`` given to it stays open, and so does a wrapped auth. Using the family afterwards opens
        them again.
        """
        self._provider.close()

    async def aclose(self) -> None:
        """:meth:`close` without blocking the event loop."""
        import asyncio

        await asyncio.to_thread(self._provider.close)

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
        """httpx's hook for ``httpx.Client``."""
        token = self.get_token()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if _renewable(request, response) and self._rejected(token):
            request.headers["Authorization"] = f"Bearer {self.get_token()}"
            yield request

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """httpx's hook for ``httpx.AsyncClient``."""
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
    connections, in-flight limit and refusal memory, and each costs a few hundred bytes.

    Args:
        client_id: the integration's client id in Maskinporten.
        scopes: the scope, or a list of scopes (one per token is recommended).
        signer: signs the grant; a :class:`~maskinporten_auth.LocalKeySigner` or a remote key backend.
        environment: ``"test"``, ``"prod"``, an issuer URL (discovered), or an :class:`Environment`.
        consumer_org: the customer's organisation number, to act for it through Altinn delegation.
        resource: audience(s) for an audience-restricted token.
        authorization_details: RFC 9396 details, e.g. an Altinn system user
            (:func:`~maskinporten_auth.grant.systemuser_authorization`).
        pid: restrict the token to one person (national identity number).
        grant_lifetime: the grant's ``exp - iat`` in seconds (at most 120).
        retry: how the token endpoint is retried; see :class:`~maskinporten_auth.retry.RetryPolicy`.
        refresh: when tokens are refreshed; see :class:`~maskinporten_auth.cache.RefreshPolicy`.
        background_refresh: refresh early in a background thread, so no caller waits on the signer.
        cache: the token store: a bounded :class:`~maskinporten_auth.cache.TokenCache` by default
            (:data:`~maskinporten_auth.cache.DEFAULT_MAX_ENTRIES` tokens), or any
            :class:`~maskinporten_auth.cache.TokenStore`, such as one shared by a fleet of processes.
        max_in_flight: the most token requests this auth family has at Maskinporten at once (threads and tasks).
        remember_refusals: seconds during which a customer Maskinporten refused (no delegation, a system user not
            set up, a scope not granted) gets the same error again at once, without a new request; 0 turns it off.
        http_client: the ``httpx.Client`` that talks to Maskinporten (proxies, custom CA). Without one the family
            opens its own, which honours ``HTTPS_PROXY``, ``NO_PROXY`` and ``SSL_CERT_FILE`` as httpx does.
        async_http_client: the ``httpx.AsyncClient`` that talks to Maskinporten from async code.
        on_event: a callback receiving :class:`~maskinporten_auth.provider.TokenEvent` for metrics.
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
        async_http_client: httpx.AsyncClient | None = None,
        on_event: Callable[[TokenEvent], None] | None = None,
    ) -> None:
        if not isinstance(signer, Signer):
            raise ConfigurationError("signer", f"must be a maskinporten_auth Signer, got {type(signer).__name__}")
        self.environment = resolve_environment(environment)
        claims = GrantClaims(
            audience=self.environment.issuer,
            client_id=client_id,
            scopes=scopes,
            consumer_org=consumer_org,
            resource=resource,
            authorization_details=authorization_details,
            pid=pid,
            lifetime=grant_lifetime,
        )
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise ConfigurationError("retry", "must be a RetryPolicy")
        if refresh is not None and not isinstance(refresh, RefreshPolicy):
            raise ConfigurationError("refresh", "must be a RefreshPolicy")
        if on_event is not None and not callable(on_event):
            raise ConfigurationError("on_event", "must be callable")
        if http_client is not None and not isinstance(http_client, httpx.Client):
            raise ConfigurationError("http_client", f"must be an httpx.Client, got {type(http_client).__name__}")
        if async_http_client is not None and not isinstance(async_http_client, httpx.AsyncClient):
            raise ConfigurationError(
                "async_http_client", f"must be an httpx.AsyncClient, got {type(async_http_client).__name__}"
            )
        max_in_flight = validate_max_in_flight(max_in_flight)
        client = TokenClient(
            self.environment,
            retry=retry,
            http_client=http_client,
            async_http_client=async_http_client,
            max_connections=max_in_flight,
        )
        self._provider = TokenProvider(
            client,
            store=cache,
            refresh=refresh,
            background_refresh=background_refresh,
            on_event=on_event,
            max_in_flight=max_in_flight,
            remember_refusals=validate_seconds(remember_refusals, "remember_refusals"),
        )
        self._grants = GrantBuilder(signer, claims)
        # the family's first key names its tokens in the cache for good: replacing the signer keeps them
        self._key_identity = signer.key_identity
        self._key = cache_key(self._key_identity, claims)
        self._family: weakref.WeakSet[MaskinportenAuth] = weakref.WeakSet([self])

    def replace_signer(self, new_signer: Signer) -> None:
        """Sign with ``new_signer`` from the next grant on, in every view of this auth family.

        Cached tokens stay: each view keeps its cache key, so a rotation does not empty the cache.
        """
        if not isinstance(new_signer, Signer):
            raise ConfigurationError(
                "new_signer", f"must be a maskinporten_auth Signer, got {type(new_signer).__name__}"
            )
        new_signer.jose_header()  # a signer Maskinporten cannot tell the key of fails here, not at the next grant
        for view in list(self._family):
            view._grants = GrantBuilder(new_signer, view._grants.claims)

    def _view(self, claims: GrantClaims) -> MaskinportenAuth:
        """Another member of this auth family: the same provider (signer, cache, connections, limits), other claims."""
        view = type(self).__new__(type(self))
        view.environment = self.environment
        view._provider = self._provider
        view._grants = self._grants.with_claims(claims)
        view._key_identity = self._key_identity
        view._key = cache_key(self._key_identity, claims)
        view._family = self._family
        self._family.add(view)
        return view

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
        Maskinporten, in-flight limit and refusal memory; it costs a few hundred bytes. Any customer this object
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

    def get_token(self) -> str:
        """Return a valid access token (cached, or fetched now)."""
        return self._provider.get_token(self._grants, self._key)

    async def aget_token(self) -> str:
        """Return a valid access token without blocking the event loop."""
        return await self._provider.aget_token(self._grants, self._key)

    def _rejected(self, token: str) -> bool:
        return self._provider.reject(self._grants, self._key, token)

    def __repr__(self) -> str:
        claims = self._grants.claims
        customer = f", consumer_org={claims.consumer_org!r}" if claims.consumer_org else ""
        if claims.systemuser_org:
            customer = f", systemuser_org={claims.systemuser_org!r}"
        return (
            f"MaskinportenAuth(client_id={claims.client_id!r}, scopes={list(claims.scopes)!r}, "
            f"environment={self.environment.name or self.environment.issuer!r}{customer}, "
            f"signer={self._grants.signer!r})"
        )


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
