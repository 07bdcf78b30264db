"""The token provider: cached tokens, one fetch at a time per cache key, refresh before expiry.

Framework-free; the auth adapters are thin wrappers around :meth:`TokenProvider.get_token` and
:meth:`TokenProvider.aget_token`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Literal

from . import forksafe
from .cache import CachedToken, Flight, RefreshPolicy, TokenCache
from .errors import MaskinportenError, NetworkError
from .grant import GrantBuilder, GrantClaims
from .token_client import TokenClient, TokenResponse

__all__ = ["TokenEvent", "TokenProvider"]

logger = logging.getLogger("maskinporten_auth")

#: Extra seconds a waiter allows beyond the fetch's retry deadline (signing with a remote key takes time too).
_WAIT_SLACK = 30.0


@dataclass(frozen=True)
class TokenEvent:
    """What happened, for metrics (``on_event=``): wire it to OpenTelemetry, Prometheus or a log.

    ``kind`` is ``"cache_hit"``, ``"fetched"`` (a new token; ``duration`` and ``expires_in`` set), ``"fetch_failed"``
    (``error`` set; the caller got the error) or ``"refresh_failed"`` (``error`` set; an early refresh failed and
    the still-valid token was used). No token or grant is ever part of an event.
    """

    kind: Literal["cache_hit", "fetched", "fetch_failed", "refresh_failed"]
    client_id: str
    scopes: tuple[str, ...]
    consumer_org: str | None
    duration: float | None = None
    expires_in: float | None = None
    error: MaskinportenError | None = None


@dataclass(frozen=True)
class _Step:
    """The provider's decision on a cache miss or refresh: use a value, fetch, or wait for another's fetch."""

    value: str | None = None
    flight: Flight | None = None
    leader: bool = False
    fallback: CachedToken | None = None


class TokenProvider:
    """Gives out access tokens for one grant configuration.

    A cache hit takes no lock and does no I/O. From a token's refresh point, one caller refreshes it while the
    others keep using it (or, with ``background_refresh``, a thread refreshes and no caller waits); near expiry
    callers wait for the single fetch in flight. A failed refresh does not fail callers while the old token is
    still valid.
    """

    def __init__(
        self,
        grants: GrantBuilder,
        client: TokenClient,
        *,
        cache: TokenCache | None = None,
        refresh: RefreshPolicy | None = None,
        background_refresh: bool = False,
        on_event: Callable[[TokenEvent], None] | None = None,
    ) -> None:
        self.grants = grants
        self.client = client
        self.cache = cache if cache is not None else TokenCache()
        self.refresh = refresh or RefreshPolicy()
        self.background_refresh = background_refresh
        self.on_event = on_event
        self._key: Hashable | None = None
        self._cooldown_until = 0.0
        forksafe.register(self)

    @property
    def cache_key(self) -> Hashable:
        """The cache key: environment, client, key, scopes, consumer_org, resource, authorization_details, pid."""
        if self._key is None:
            claims = self.grants.claims
            self._key = (
                claims.audience,
                claims.client_id,
                self.grants.signer.key_identity,
                claims.scopes,
                claims.consumer_org,
                claims.resource,
                json.dumps(claims.authorization_details, sort_keys=True),
                claims.pid,
            )
        return self._key

    def with_claims(self, claims: GrantClaims) -> TokenProvider:
        """Return a provider for other claims with the same signer, token client, cache and policies."""
        return TokenProvider(
            GrantBuilder(self.grants.signer, claims),
            self.client,
            cache=self.cache,
            refresh=self.refresh,
            background_refresh=self.background_refresh,
            on_event=self.on_event,
        )

    def _fresh(self) -> str | None:
        """The cached token while it needs no refresh: the hot path, with no lock and no I/O."""
        token = self.cache.get(self.cache_key)
        if token is not None and time.monotonic() < token.refresh_at:
            if self.on_event is not None:
                self._emit("cache_hit")
            return token.value
        return None

    def get_token(self) -> str:
        """Return a valid access token, fetching one if needed (blocking)."""
        value = self._fresh()
        if value is not None:
            return value
        while True:
            step = self._next_step()
            if step.value is not None:
                return step.value
            assert step.flight is not None
            if step.leader:
                return self._lead(step.flight, step.fallback)
            if not step.flight.wait(self._wait_timeout()):
                raise self._wait_timed_out()
            value = self._waited(step.flight)
            if value is not None:
                return value

    async def aget_token(self) -> str:
        """Return a valid access token, fetching one if needed, without blocking the event loop."""
        value = self._fresh()
        if value is not None:
            return value
        while True:
            step = self._next_step()
            if step.value is not None:
                return step.value
            assert step.flight is not None
            if step.leader:
                return await self._alead(step.flight, step.fallback)
            if not await step.flight.wait_async(self._wait_timeout()):
                raise self._wait_timed_out()
            value = self._waited(step.flight)
            if value is not None:
                return value

    def invalidate(self, value: str) -> None:
        """Forget ``value`` if it is still the cached token (the API rejected it with 401)."""
        if self.cache.invalidate(self.cache_key, value):
            logger.info("the API rejected the cached token (401); fetching a new one")

    def _next_step(self) -> _Step:
        key = self.cache_key
        token = self.cache.get(key)
        now = time.monotonic()
        if token is not None and now < token.refresh_at:
            return _Step(value=token.value)
        if token is not None and now < token.must_refresh_at:
            if now < self._cooldown_until:
                return _Step(value=token.value)
            flight, leader = self.cache.begin_fetch(key, join=False)
            if not leader or flight is None:
                return _Step(value=token.value)
            if self.background_refresh:
                threading.Thread(
                    target=self._lead, args=(flight, token), name="maskinporten-refresh", daemon=True
                ).start()
                return _Step(value=token.value)
            return _Step(flight=flight, leader=True, fallback=token)
        flight, leader = self.cache.begin_fetch(key, join=True)
        return _Step(flight=flight, leader=leader, fallback=token)

    def _lead(self, flight: Flight, fallback: CachedToken | None) -> str:
        started = time.monotonic()
        try:
            response = self.client.fetch(self.grants.build)
        except MaskinportenError as exc:
            return self._failed(flight, fallback, exc, started)
        except BaseException:
            self.cache.end_fetch(self.cache_key, flight)
            raise
        return self._fetched(flight, response, started)

    async def _alead(self, flight: Flight, fallback: CachedToken | None) -> str:
        started = time.monotonic()
        try:
            response = await self.client.afetch(self.grants.abuild)
        except MaskinportenError as exc:
            return self._failed(flight, fallback, exc, started)
        except BaseException:  # cancelled: the flight is abandoned and a waiter takes over
            self.cache.end_fetch(self.cache_key, flight)
            raise
        return self._fetched(flight, response, started)

    def _fetched(self, flight: Flight, response: TokenResponse, started: float) -> str:
        token = self.refresh.schedule(response.access_token, response.expires_in, started, response.scope)
        self.cache.end_fetch(self.cache_key, flight, token=token)
        duration = time.monotonic() - started
        claims = self.grants.claims
        logger.info(
            "Maskinporten token obtained: client_id=%s scopes=%s consumer_org=%s duration=%.0fms expires_in=%ds",
            claims.client_id,
            " ".join(claims.scopes),
            claims.consumer_org,
            duration * 1000,
            response.expires_in,
        )
        if self.on_event is not None:
            self._emit("fetched", duration=duration, expires_in=response.expires_in)
        return token.value

    def _failed(self, flight: Flight, fallback: CachedToken | None, error: MaskinportenError, started: float) -> str:
        self.cache.end_fetch(self.cache_key, flight, error=error)
        now = time.monotonic()
        duration = now - started
        if fallback is not None and now < fallback.expires_at:
            time_to_must = max(0.0, fallback.must_refresh_at - now)
            self._cooldown_until = now + min(self.refresh.failure_cooldown, time_to_must / 2)
            logger.warning("early token refresh failed; still using the valid token: %s", error)
            if self.on_event is not None:
                self._emit("refresh_failed", duration=duration, error=error)
            return fallback.value
        logger.warning("Maskinporten token request failed: %s", error)
        if self.on_event is not None:
            self._emit("fetch_failed", duration=duration, error=error)
        raise error

    def _waited(self, flight: Flight) -> str | None:
        """The value a waiter gets from a finished flight; None means the fetcher gave up, so go round again."""
        if flight.token is not None:
            return flight.token.value
        if flight.error is not None:
            token = self.cache.get(self.cache_key)
            if token is not None and time.monotonic() < token.expires_at:
                return token.value
            raise flight.error
        return None

    def _wait_timeout(self) -> float:
        return self.client.retry.deadline + _WAIT_SLACK

    def _wait_timed_out(self) -> NetworkError:
        return NetworkError(f"no token arrived within {self._wait_timeout():.0f} s from the fetch in progress")

    def _emit(
        self,
        kind: Literal["cache_hit", "fetched", "fetch_failed", "refresh_failed"],
        *,
        duration: float | None = None,
        expires_in: float | None = None,
        error: MaskinportenError | None = None,
    ) -> None:
        assert self.on_event is not None
        claims = self.grants.claims
        event = TokenEvent(kind, claims.client_id, claims.scopes, claims.consumer_org, duration, expires_in, error)
        try:
            self.on_event(event)
        except Exception:
            logger.exception("the on_event callback failed")

    def _after_fork(self) -> None:
        self.client.forget_connections()
