"""The token provider of an auth family: cached tokens, one fetch per cache key, refresh before expiry.

An *auth family* is a :class:`~maskinporten_auth.MaskinportenAuth` and every view made from it
(``with_consumer_org``, ``with_systemuser``). They share one provider, and so one signer, one token store, one
connection pool to Maskinporten, one bound on fetches in flight and one memory of refusals. A view brings only its
grant claims and its cache key.

Where tokens come from is the provider's :class:`TokenSource`: Maskinporten's token endpoint
(:class:`~maskinporten_auth.token_client.TokenClient`, one per auth family) or Altinn's token exchange
(:class:`~maskinporten_auth.altinn.AltinnExchange`, one per :class:`~maskinporten_auth.AltinnAuth` family). Both get
the same cache, refresh policy, single flight, in-flight limit and refusal memory.

Framework-free; the auth adapters are thin wrappers around :meth:`TokenProvider.get_token` and
:meth:`TokenProvider.aget_token`.
"""

from __future__ import annotations

import contextvars
import copy
import hashlib
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, Literal, NamedTuple, Protocol, TypeVar

from . import forksafe
from .cache import CachedToken, RefreshPolicy, TokenCache, TokenState, TokenStore
from .errors import ConfigurationError, MaskinportenError, NetworkError, TokenRequestError
from .grant import GrantClaims
from .singleflight import Flight, Flights, Limiter, Workers
from .token_client import TokenResponse

if TYPE_CHECKING:
    import asyncio

__all__ = [
    "DEFAULT_MAX_IN_FLIGHT",
    "DEFAULT_REMEMBER_REFUSALS",
    "TokenEvent",
    "TokenProvider",
    "TokenRequest",
    "TokenSource",
    "cache_key",
    "validate_max_in_flight",
]

logger = logging.getLogger("maskinporten_auth")

DEFAULT_MAX_IN_FLIGHT = 32
DEFAULT_REMEMBER_REFUSALS = 30.0

#: Extra seconds a waiter allows beyond the fetch's retry deadline (signing with a remote key takes time too).
_WAIT_SLACK = 30.0
#: The most customers whose refusal or failed refresh is remembered at once.
_MAX_SETBACKS = 10_000

EventKind = Literal["cache_hit", "fetched", "fetch_failed", "refresh_failed", "refused"]


@dataclass(frozen=True)
class TokenEvent:
    """What happened, for metrics (``on_event=``): wire it to OpenTelemetry, Prometheus or a log.

    ``kind`` is ``"cache_hit"``, ``"fetched"`` (a new token; ``duration`` and ``expires_in`` set), ``"fetch_failed"``
    (``error`` set; the caller got the error), ``"refresh_failed"`` (``error`` set; an early refresh failed and
    the still-valid token was used) or ``"refused"`` (``error`` set; Maskinporten refused this customer a moment
    ago and the caller got that refusal again without a request). No token or grant is ever part of an event.
    """

    kind: EventKind
    client_id: str
    scopes: tuple[str, ...]
    consumer_org: str | None
    duration: float | None = None
    expires_in: float | None = None
    error: MaskinportenError | None = None
    systemuser_org: str | None = None
    source: str = "maskinporten"
    """Which token: ``"maskinporten"``, or ``"altinn"`` for an Altinn token exchanged from a Maskinporten token."""


class TokenRequest(Protocol):
    """What a view hands the provider for one token: its grant claims name it in events and log lines."""

    @property
    def claims(self) -> GrantClaims:
        """The Maskinporten grant claims behind the token."""
        ...


RequestT = TypeVar("RequestT", bound=TokenRequest)
OtherRequestT = TypeVar("OtherRequestT", bound=TokenRequest)
RequestT_contra = TypeVar("RequestT_contra", bound=TokenRequest, contravariant=True)


class TokenSource(Protocol[RequestT_contra]):
    """Where a provider's tokens come from. ``obtain`` blocks (never call it on an event loop) and retries."""

    @property
    def name(self) -> str:
        """What log lines and events call the tokens: ``"maskinporten"`` or ``"altinn"``."""
        ...

    @property
    def deadline(self) -> float:
        """Seconds after which :meth:`obtain` has given up; waiters for a fetch allow this and some slack."""
        ...

    def obtain(self, request: RequestT_contra, loop: asyncio.AbstractEventLoop | None) -> TokenResponse:
        """Fetch a new token for ``request``; ``loop`` is the asyncio caller's event loop, if any."""
        ...

    def close(self) -> None:
        """Close the connections the source opened; later use opens them again."""
        ...

    def forget_connections(self) -> None:
        """Drop (without closing) the connections the source owns: after ``os.fork()`` they are the parent's."""
        ...


class _Setback(NamedTuple):
    """Why a key is not fetched for a while: a refusal to repeat, or (``error`` None) a failed early refresh."""

    until: float
    error: TokenRequestError | None


def cache_key(signer_identity: str, claims: GrantClaims) -> str:
    """The cache key of a token: a digest of everything that makes it differ, from configuration alone.

    A digest rather than the values, so that a shared store never holds an identity number (``pid``) in clear.
    """
    parts = [
        claims.audience,
        claims.client_id,
        signer_identity,
        claims.scopes,
        claims.consumer_org,
        claims.resource,
        claims.authorization_details,
        claims.pid,
    ]
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode("utf-8")).hexdigest()


def validate_max_in_flight(value: object, field: str = "max_in_flight") -> int:
    """Return ``value`` if it is a whole number of at least 1, else raise ConfigurationError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(field, f"must be a whole number of at least 1, got {value!r}")
    return value


def _newer_and_usable(shared: CachedToken, held: CachedToken | None) -> bool:
    """Whether a token found in a shared store can serve instead of a fetch: newer than ours, and not near its end.

    One due for refresh serves too: the next caller that sees it due starts the fleet's single refresh.
    """
    if held is not None and shared.expires_at <= held.expires_at:
        return False
    return shared.state(time.monotonic()) in (TokenState.FRESH, TokenState.REFRESH_DUE)


class TokenProvider(Generic[RequestT]):
    """Gives out access tokens for the views of one auth family, fetched from its :class:`TokenSource`.

    A cache hit takes no lock and does no I/O. From a token's refresh point, one caller refreshes it while the
    others keep using it (async callers and ``background_refresh`` hand the refresh to a worker thread, so nobody
    waits); near expiry callers wait for the single fetch in flight. A failed refresh does not fail callers while
    the old token is still valid. At most ``max_in_flight`` fetches run at once; a refusal is remembered for
    ``remember_refusals`` seconds.

    Async callers never fetch on the event loop: the fetch (signing included) runs in a worker thread on the pooled
    sync connection, and the caller waits for it without blocking its loop. A cancelled caller leaves the fetch
    running; its token serves the next caller.
    """

    def __init__(
        self,
        client: TokenSource[RequestT],
        *,
        store: TokenStore | None = None,
        refresh: RefreshPolicy | None = None,
        background_refresh: bool = False,
        on_event: Callable[[TokenEvent], None] | None = None,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        remember_refusals: float = DEFAULT_REMEMBER_REFUSALS,
    ) -> None:
        if store is not None and not isinstance(store, TokenStore):
            raise ConfigurationError("cache", f"must be a TokenStore (such as TokenCache), got {type(store).__name__}")
        self.client = client
        self.store = store if store is not None else TokenCache()
        self.refresh = refresh or RefreshPolicy()
        self.background_refresh = background_refresh
        self.on_event = on_event
        self.max_in_flight = max_in_flight
        self.remember_refusals = remember_refusals
        self._flights = Flights()
        self._limiter = Limiter(max_in_flight)
        self._setbacks: OrderedDict[str, _Setback] = OrderedDict()
        #: When the token of a key was dropped after a 401: its successor is a renewal.
        self._renewals: OrderedDict[str, float] = OrderedDict()
        self._warned_renewals: OrderedDict[str, float | None] = OrderedDict()
        self._setbacks_lock = threading.Lock()
        self._workers = Workers(max_in_flight, "maskinporten-fetch")
        forksafe.register(self)

    def for_source(self, client: TokenSource[OtherRequestT]) -> TokenProvider[OtherRequestT]:
        """A provider of tokens from ``client`` with this one's settings.

        It shares this provider's store and copies its refresh policy, events, bound on fetches in flight and time
        refusals are remembered: an Altinn exchange beside the Maskinporten family whose tokens it exchanges.
        """
        return TokenProvider(
            client,
            store=self.store,
            refresh=self.refresh,
            background_refresh=self.background_refresh,
            on_event=self.on_event,
            max_in_flight=self.max_in_flight,
            remember_refusals=self.remember_refusals,
        )

    @property
    def patience(self) -> float:
        """Seconds a caller waits for the fetch in flight: the source's deadline and some slack."""
        return self.client.deadline + _WAIT_SLACK

    @property
    def peak_in_flight(self) -> int:
        """The most fetches that have run at once so far (for tests and benchmarks)."""
        return self._limiter.peak

    # The hot path

    def get_token(self, request: RequestT, key: str) -> str:
        """Return a valid access token for ``request``, fetching one if needed (blocking)."""
        return self._fresh(request, key) or self._get(request, key)

    async def aget_token(self, request: RequestT, key: str) -> str:
        """Return a valid access token for ``request`` without blocking the event loop."""
        return self._fresh(request, key) or await self._aget(request, key)

    def _fresh(self, request: RequestT, key: str) -> str | None:
        """The cached token while it needs no refresh: no lock, no I/O."""
        token = self.store.get(key)
        if token is not None and time.monotonic() < token.refresh_at:
            if self.on_event is not None:
                self._emit("cache_hit", request.claims)
            return token.value
        return None

    def reject(self, request: RequestT, key: str, value: str) -> bool:
        """The API answered 401 to ``value``, the token of ``key``: return whether a renewed token should be sent.

        The token is renewed at most once: of a burst of 401s for one token only the first drops it, and the others
        resend with whatever token the key has then. A renewed token that is rejected too stays cached and is not
        renewed while it is younger than ``remember_refusals``: a new token would not be accepted either, and an API
        that answers 401 to everything would otherwise cost a grant per request. Its 401 goes back to the caller.
        The rule holds across processes that share a store, since the token carries when it was renewed.
        """
        held = self.store.get(key)
        if held is None or held.value != value:
            return True  # renewed already, or being fetched: the resend waits for that token
        now = time.monotonic()
        if held.renewed_at is not None and now - held.renewed_at < self.remember_refusals:
            self._warn_renewal_rejected(request, key, held)
            return False
        if self.store.invalidate(key, value):
            with self._setbacks_lock:
                self._renewals[key] = now
                while len(self._renewals) > _MAX_SETBACKS:
                    self._renewals.popitem(last=False)
            logger.info("the API rejected the cached %s token (401); fetching a new one", self.client.name)
        return True

    def _warn_renewal_rejected(self, request: RequestT, key: str, token: CachedToken) -> None:
        """Log once per renewed token that the API rejected it too."""
        with self._setbacks_lock:
            if self._warned_renewals.get(key) == token.renewed_at:
                return
            self._warned_renewals[key] = token.renewed_at
            while len(self._warned_renewals) > _MAX_SETBACKS:
                self._warned_renewals.popitem(last=False)
        claims = request.claims
        logger.warning(
            "the API rejected a renewed %s token too (401): client_id=%s scopes=%s customer=%s; not renewing it for "
            "%.0f s. A new token would not help: check the scope the API wants, resource (the audience), and the "
            "customer's delegation or system user at the API's side",
            self.client.name,
            claims.client_id,
            " ".join(claims.scopes),
            claims.consumer_org or claims.systemuser_org,
            self.remember_refusals,
        )

    # Cache misses and refreshes

    def _get(self, request: RequestT, key: str) -> str:
        while True:
            step = self._step(request, key, None)
            if isinstance(step, str):
                return step
            if not step.wait(self.patience):
                raise self._wait_timed_out()
            value = self._outcome(key, step)
            if value is not None:
                return value

    async def _aget(self, request: RequestT, key: str) -> str:
        import asyncio  # here, not at the top: a program that never awaits a token need not load asyncio

        loop = asyncio.get_running_loop()
        while True:
            step = self._step(request, key, loop)
            if isinstance(step, str):
                return step
            if not await step.wait_async(self.patience):
                raise self._wait_timed_out()
            value = self._outcome(key, step)
            if value is not None:
                return value

    def _step(self, request: RequestT, key: str, loop: asyncio.AbstractEventLoop | None) -> str | Flight:
        """Decide by the cached token's state: a token to use now, or the fetch in flight to wait for.

        A thread (``loop`` None) that must fetch does so itself; an asyncio caller hands the fetch to a worker
        thread and waits for it. An early refresh never makes anyone wait but the thread that runs it, and not
        even that one with ``background_refresh``.
        """
        token = self.store.get(key)
        now = time.monotonic()
        state = token.state(now) if token is not None else TokenState.EXPIRED
        if token is not None and state is TokenState.FRESH:
            return token.value
        if token is not None and state is TokenState.REFRESH_DUE:
            refresh = self._begin_refresh(key, now)
            if refresh is not None:
                if loop is None and not self.background_refresh:
                    return self._lead(request, key, refresh, token)
                self._in_worker(request, key, refresh, token, loop)
            return token.value
        usable = self._unless_refused(request, key, token, now)
        if usable is not None:
            return usable
        flight, leader = self._flights.begin(key, join=True)
        assert flight is not None
        if leader:
            if loop is None:
                return self._lead(request, key, flight, token)
            self._in_worker(request, key, flight, token, loop)
        return flight

    def _begin_refresh(self, key: str, now: float) -> Flight | None:
        """The flight of an early refresh this caller should start, or None (paused, or another caller has it)."""
        setback = self._setbacks.get(key)
        if setback is not None and now < setback.until:
            return None
        flight, leader = self._flights.begin(key, join=False)
        return flight if leader else None

    def _unless_refused(self, request: RequestT, key: str, token: CachedToken | None, now: float) -> str | None:
        """With a refusal remembered for ``key``: the still-valid token if there is one, else raise the refusal."""
        setback = self._setbacks.get(key)
        if setback is None or setback.error is None or now >= setback.until:
            return None
        if token is not None and self.refresh.usable(token, now):
            return token.value
        if self.on_event is not None:
            self._emit("refused", request.claims, error=setback.error)
        raise copy.copy(setback.error)

    def _in_worker(
        self,
        request: RequestT,
        key: str,
        flight: Flight,
        fallback: CachedToken | None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        """Run the fetch in a worker thread; with ``loop``, an application's httpx.AsyncClient posts on it.

        The fetch runs in a copy of the caller's context, as with ``asyncio.to_thread``: a span the caller is in
        parents the ``on_event`` callbacks' spans.
        """
        context = contextvars.copy_context()
        try:
            self._workers.submit(lambda: context.run(self._lead, request, key, flight, fallback, loop))
        except RuntimeError as exc:  # the interpreter is shutting down: no new thread can start
            self._flights.end(key, flight, error=NetworkError(f"no worker thread to fetch a token: {exc}"))

    def _lead(
        self,
        request: RequestT,
        key: str,
        flight: Flight,
        fallback: CachedToken | None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> str:
        """Fetch the token of ``flight`` (in the caller's thread or a worker), store it and wake the waiters."""
        try:
            with self._limiter.slot():
                flight.start()
                with self.store.fetching(key, self.patience):
                    shared = self.store.load(key)
                    if shared is not None and _newer_and_usable(shared, fallback):
                        self._flights.end(key, flight, token=shared)  # another process of the fleet fetched it
                        return shared.value
                    sent_at = time.monotonic()  # after any wait for the fleet's lease: the token's life starts here
                    renewal = key in self._renewals
                    response = self.client.obtain(request, loop)
                    token = self.refresh.schedule(response.access_token, response.expires_in, sent_at, renewal=renewal)
                    self.store.put(key, token)
                    if renewal:
                        with self._setbacks_lock:
                            self._renewals.pop(key, None)
        except MaskinportenError as exc:
            return self._failed(request, key, flight, fallback, exc)
        except BaseException:
            self._flights.end(key, flight)
            raise
        self._fetched(request, key, flight, token, response)
        return token.value

    def _fetched(
        self, request: RequestT, key: str, flight: Flight, token: CachedToken, response: TokenResponse
    ) -> None:
        if key in self._setbacks:
            with self._setbacks_lock:
                self._setbacks.pop(key, None)
        self._flights.end(key, flight, token=token)
        duration = flight.duration() or 0.0  # the flight ran: it has a start
        claims = request.claims
        logger.info(
            "%s token obtained: client_id=%s scopes=%s consumer_org=%s duration=%.0fms expires_in=%ds",
            self.client.name.capitalize(),
            claims.client_id,
            " ".join(claims.scopes),
            claims.consumer_org or claims.systemuser_org,
            duration * 1000,
            response.expires_in,
        )
        if self.on_event is not None:
            self._emit("fetched", claims, duration=duration, expires_in=response.expires_in)

    def _failed(
        self,
        request: RequestT,
        key: str,
        flight: Flight,
        fallback: CachedToken | None,
        error: MaskinportenError,
    ) -> str:
        now = time.monotonic()
        duration = flight.duration()
        refusal = error if isinstance(error, TokenRequestError) and error.refusal else None
        remembered = refusal is not None and self.remember_refusals > 0
        if remembered:
            self._remember(key, _Setback(now + self.remember_refusals, refusal))
        if fallback is not None and self.refresh.usable(fallback, now):
            if not remembered:
                time_to_must = max(0.0, fallback.must_refresh_at - now)
                self._remember(key, _Setback(now + min(self.refresh.failure_cooldown, time_to_must / 2), None))
            self._flights.end(key, flight, error=error)
            logger.warning("early token refresh failed; still using the valid token: %s", error)
            if self.on_event is not None:
                self._emit("refresh_failed", request.claims, duration=duration, error=error)
            return fallback.value
        self._flights.end(key, flight, error=error)
        logger.warning("%s token request failed: %s", self.client.name.capitalize(), error)
        if self.on_event is not None:
            self._emit("fetch_failed", request.claims, duration=duration, error=error)
        raise error

    def forget_refusal(self, key: str) -> None:
        """Forget a refusal remembered for ``key``, so that the next call asks Maskinporten again."""
        with self._setbacks_lock:
            setback = self._setbacks.get(key)
            if setback is not None and setback.error is not None:
                del self._setbacks[key]

    def _remember(self, key: str, setback: _Setback) -> None:
        with self._setbacks_lock:
            self._setbacks[key] = setback
            self._setbacks.move_to_end(key)
            while len(self._setbacks) > _MAX_SETBACKS:
                self._setbacks.popitem(last=False)

    def _outcome(self, key: str, flight: Flight) -> str | None:
        """The value a waiter gets from a finished flight; None means the fetcher gave up, so go round again."""
        if flight.token is not None:
            return flight.token.value
        if flight.error is not None:
            token = self.store.get(key)
            if token is not None and self.refresh.usable(token, time.monotonic()):
                return token.value
            raise flight.error
        return None

    def _wait_timed_out(self) -> NetworkError:
        return NetworkError(f"no token arrived within {self.patience:.0f} s from the fetch in progress")

    def _emit(
        self,
        kind: EventKind,
        claims: GrantClaims,
        *,
        duration: float | None = None,
        expires_in: float | None = None,
        error: MaskinportenError | None = None,
    ) -> None:
        assert self.on_event is not None
        event = TokenEvent(
            kind,
            claims.client_id,
            claims.scopes,
            claims.consumer_org,
            duration,
            expires_in,
            error,
            claims.systemuser_org,
            self.client.name,
        )
        try:
            self.on_event(event)
        except Exception:
            logger.exception("the on_event callback failed")

    # Lifecycle

    def close(self) -> None:
        """Release the worker threads and the connections this family opened; later use opens them again."""
        self._workers.close()
        self.client.close()

    def _after_fork(self) -> None:
        # The parent's fetches, slots and worker threads do not exist in the child.
        self._flights.reset()
        self._limiter.reset()
        self._setbacks_lock = threading.Lock()
        self._workers.reset()
        self.client.forget_connections()
