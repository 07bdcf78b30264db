"""MaskinportenAuth: ``auth=`` for httpx (sync and async) and requests."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Generator, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import httpx

from .cache import RefreshPolicy, TokenCache
from .environment import Environment, resolve_environment
from .errors import ConfigurationError
from .grant import (
    DEFAULT_GRANT_LIFETIME,
    GrantBuilder,
    GrantClaims,
    validate_authorization_details,
    validate_pid,
    validate_resource,
    validate_scopes,
)
from .orgnr import validate_orgno
from .provider import TokenEvent, TokenProvider
from .retry import RetryPolicy
from .signer import Signer
from .token_client import TokenClient

if TYPE_CHECKING:
    import requests

__all__ = ["MaskinportenAuth"]


class MaskinportenAuth(httpx.Auth):
    """Adds ``Authorization: Bearer <Maskinporten access token>`` to each request.

    One object serves ``httpx.Client``, ``httpx.AsyncClient`` and ``requests`` at once, from any number of threads
    and event loops. Tokens are cached and refreshed before they expire. When the API answers 401, the token is
    refreshed once and the request resent once, if its body can be sent again.

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
        cache: share a :class:`~maskinporten_auth.cache.TokenCache` between auth objects.
        http_client: the ``httpx.Client`` that talks to Maskinporten (proxies, custom CA).
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
        cache: TokenCache | None = None,
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
            scopes=validate_scopes(scopes),
            consumer_org=None if consumer_org is None else validate_orgno(consumer_org, "consumer_org"),
            resource=validate_resource(resource),
            authorization_details=validate_authorization_details(authorization_details),
            pid=validate_pid(pid),
            lifetime=grant_lifetime,
        )
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise ConfigurationError("retry", "must be a RetryPolicy")
        if refresh is not None and not isinstance(refresh, RefreshPolicy):
            raise ConfigurationError("refresh", "must be a RefreshPolicy")
        if on_event is not None and not callable(on_event):
            raise ConfigurationError("on_event", "must be callable")
        client = TokenClient(
            self.environment, retry=retry, http_client=http_client, async_http_client=async_http_client
        )
        self._provider = TokenProvider(
            GrantBuilder(signer, claims),
            client,
            cache=cache,
            refresh=refresh,
            background_refresh=background_refresh,
            on_event=on_event,
        )

    @classmethod
    def _from_provider(cls, provider: TokenProvider) -> MaskinportenAuth:
        auth = cls.__new__(cls)
        auth.environment = provider.client.environment
        auth._provider = provider
        return auth

    @classmethod
    def from_env(cls, prefix: str = "MASKINPORTEN_", **overrides: Any) -> MaskinportenAuth:
        """Build from ``MASKINPORTEN_*`` environment variables (see the README); errors name the variable."""
        from .config import auth_from_env

        return auth_from_env(prefix=prefix, **overrides)

    @property
    def client_id(self) -> str:
        """The integration's client id."""
        return self._provider.grants.claims.client_id

    @property
    def scopes(self) -> tuple[str, ...]:
        """The scopes asked for."""
        return self._provider.grants.claims.scopes

    @property
    def consumer_org(self) -> str | None:
        """The customer this auth acts for, or None."""
        return self._provider.grants.claims.consumer_org

    @property
    def signer(self) -> Signer:
        """The signer of the grants."""
        return self._provider.grants.signer

    @property
    def cache(self) -> TokenCache:
        """The token cache (shared with the objects made by :meth:`with_consumer_org`)."""
        return self._provider.cache

    def with_consumer_org(self, consumer_org: str) -> MaskinportenAuth:
        """Return an auth object with the same signer and settings that acts for another customer.

        It shares this object's token cache and connection to Maskinporten.
        """
        claims = replace(self._provider.grants.claims, consumer_org=validate_orgno(consumer_org, "consumer_org"))
        return self._from_provider(self._provider.with_claims(claims))

    def get_token(self) -> str:
        """Return a valid access token (cached, or fetched now)."""
        return self._provider.get_token()

    async def aget_token(self) -> str:
        """Return a valid access token without blocking the event loop."""
        return await self._provider.aget_token()

    def close(self) -> None:
        """Close the connection to Maskinporten this object opened (an ``http_client`` given to it stays open)."""
        self._provider.client.close()

    # httpx

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        """httpx's hook for ``httpx.Client``."""
        token = self._provider.get_token()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401 and _replayable(request):
            self._provider.invalidate(token)
            request.headers["Authorization"] = f"Bearer {self._provider.get_token()}"
            yield request

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        """httpx's hook for ``httpx.AsyncClient``."""
        token = await self._provider.aget_token()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401 and _replayable(request):
            self._provider.invalidate(token)
            request.headers["Authorization"] = f"Bearer {await self._provider.aget_token()}"
            yield request

    # requests

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        """requests' hook: ``requests.get(url, auth=auth)``."""
        token = self._provider.get_token()
        request.headers["Authorization"] = f"Bearer {token}"
        if request.body is None or isinstance(request.body, (bytes, str)):
            request.register_hook("response", _RequestsRetryOn401(self._provider, token))  # type: ignore[no-untyped-call]
        return request

    def __repr__(self) -> str:
        claims = self._provider.grants.claims
        customer = f", consumer_org={claims.consumer_org!r}" if claims.consumer_org else ""
        return (
            f"MaskinportenAuth(client_id={claims.client_id!r}, scopes={list(claims.scopes)!r}, "
            f"environment={self.environment.name or self.environment.issuer!r}{customer}, "
            f"signer={self._provider.grants.signer!r})"
        )


def _replayable(request: httpx.Request) -> bool:
    """Whether the request body can be sent again (in memory, not a one-shot stream)."""
    return isinstance(request.stream, httpx.ByteStream)


class _RequestsRetryOn401:
    """A requests response hook: on 401, refresh the token once and resend the request once."""

    def __init__(self, provider: TokenProvider, token: str) -> None:
        self._provider = provider
        self._token = token

    def __call__(self, response: requests.Response, **send_kwargs: Any) -> requests.Response:
        if response.status_code != 401:
            return response
        from requests.cookies import extract_cookies_to_jar

        self._provider.invalidate(self._token)
        token = self._provider.get_token()
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
