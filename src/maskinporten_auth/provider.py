"""The token provider of an auth family: cached tokens, one fetch per cache key, refresh before expiry.

An *auth family* is a :class:`~maskinporten_auth.MaskinportenAuth`, every view made from it (``with_consumer_org``,
``with_systemuser``) and every :class:`~maskinporten_auth.AltinnAuth` over them. They share one provider, and so one
token store, one refresh policy, one set of worker threads and one memory of refusals. A view brings a
:class:`TokenRequest`: its cache key, its claims, and the issuer its token comes from.

Framework-free; the auth adapters are thin wrappers around :meth:`TokenProvider.get_token` and
:meth:`TokenProvider.aget_token`.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import contextvars
import copy
import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, NamedTuple, TypeVar

from . import forksafe
from .cache import CachedToken, RefreshPolicy, TokenCache, TokenState, TokenStore
from .endpoints import AltinnExchange, TokenEndpoint, TokenResponse
from .errors import ConfigurationError, MaskinportenError, NetworkError, TokenRequestError
from .grant import GrantClaims

__all__ = [
    "DEFAULT_MAX_IN_FLIGHT",
    "DEFAULT_REMEMBER_REFUSALS",
    "Flight",
    "TokenEvent",
    "TokenProvider",
    "TokenRequest",
]

logger = logging.getLogger("maskinporten_auth")

DEFAULT_MAX_IN_FLIGHT = 32
DEFAULT_REMEMBER_REFUSALS = 30.0

#: Extra seconds a waiter allows beyond the fetch's retry deadline (signing with a remote key takes time too).
_WAIT_SLACK = 30.0
#: The most customers whose refusal, failed refresh or renewal is remembered at once.
_MAX_REMEMBERED = 10_000

_T = TypeVar("_T")

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


@dataclass(frozen=True, slots=True)
class TokenRequest:
    """What a view asks its provider for: the token under ``key``, for ``claims``, fetched by ``fetch`` (blocking)."""

    key: str
    claims: GrantClaims
    source: TokenEndpoint | AltinnExchange
    fetch: Callable[[], TokenResponse]

    @property
    def patience(self) -> float:
        """Seconds a caller waits for the fetch in flight, from its start: the issuer's deadline and some slack."""
        return self.source.deadline + _WAIT_SLACK


class _Setback(NamedTuple):
    """Why a key is not fetched for a while: a refusal to repeat, or (``error`` None) a failed early refresh."""

    until: float
    error: TokenRequestError | None


class Flight:
    """One token fetch: queued for a slot, then started, then finished with a token, an error, or neither.

    Neither means the fetching thread was interrupted: a waiter then fetches itself. Threads wait on the flight's
    future; asyncio tasks await it. Waiters' patience counts from the start, so a fetch queued behind the in-flight
    limit does not time them out.
    """

    def __init__(self) -> None:
        self._outcome: concurrent.futures.Future[None] = concurrent.futures.Future()
        self.token: CachedToken | None = None
        self.error: BaseException | None = None
        self.started_at: float | None = None

    def start(self) -> None:
        """Mark the fetch as running: from now on waiters' patience runs."""
        self.started_at = time.monotonic()

    def duration(self) -> float | None:
        """Seconds since the fetch started running, or None if it never did."""
        return None if self.started_at is None else time.monotonic() - self.started_at

    def finish(self, token: CachedToken | None = None, error: BaseException | None = None) -> None:
        """Record the outcome and wake every waiter."""
        self.token, self.error = token, error
        self._outcome.set_result(None)

    def value(self) -> str | None:
        """The token the ended fetch brought, or its error raised; None if it brought neither (fetch again)."""
        if self.token is not None:
            return self.token.value
        if self.error is not None:
            raise self.error
        return None

    def _slice(self, patience: float) -> float | None:
        """Seconds to wait before looking again (a queued fetch may start any time); None once patience ran out."""
        if self.started_at is None:
            return patience
        remaining = self.started_at + patience - time.monotonic()
        return remaining if remaining > 0 else None

    def wait(self, patience: float) -> bool:
        """Block until the fetch ends; False if it ran longer than ``patience`` seconds."""
        while (timeout := self._slice(patience)) is not None:
            try:
                self._outcome.result(timeout)
                return True
            except concurrent.futures.TimeoutError:
                pass
        return self._outcome.done()

    async def wait_async(self, patience: float) -> bool:
        """Wait in the running event loop until the fetch ends; False if it ran longer than ``patience``."""
        import asyncio  # here, not at the top: a program that never awaits a token need not load asyncio

        outcome = asyncio.wrap_future(self._outcome)
        while (timeout := self._slice(patience)) is not None:
            await asyncio.wait((outcome,), timeout=timeout)  # unlike wait_for, a timeout leaves the fetch alone
            if outcome.done():
                return True
        return self._outcome.done()


class _Workers:
    """Daemon threads that run the fetches of asyncio callers and background refreshes: at most ``size``.

    Daemon threads, not a ``ThreadPoolExecutor``'s: a fetch nobody waits for any more never holds up the
    interpreter's exit.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._jobs: queue.SimpleQueue[Callable[[], object] | None] = queue.SimpleQueue()
        self._started = 0
        self._lock = threading.Lock()

    def submit(self, job: Callable[[], object]) -> None:
        """Run ``job()`` in a worker thread; start one more while fewer than ``size`` run."""
        self._jobs.put(job)
        with self._lock:
            if self._started < self.size:
                self._started += 1
                name = f"maskinporten-fetch-{self._started}"
                threading.Thread(target=self._work, args=(self._jobs,), name=name, daemon=True).start()

    @staticmethod
    def _work(jobs: queue.SimpleQueue[Callable[[], object] | None]) -> None:
        while (job := jobs.get()) is not None:
            job()

    def close(self) -> None:
        """Let the workers finish their jobs and stop; a later :meth:`submit` starts new ones."""
        with self._lock:
            jobs, started = self._jobs, self._started
            self._jobs, self._started = queue.SimpleQueue(), 0
        for _ in range(started):
            jobs.put(None)

    def reset(self) -> None:
        """Forget the workers: after a fork they do not exist in the child."""
        self._jobs, self._started, self._lock = queue.SimpleQueue(), 0, threading.Lock()


def _newer_and_usable(shared: CachedToken, held: CachedToken | None) -> bool:
    """Whether a token found in a shared store can serve instead of a fetch: newer than ours, and not near its end.

    One due for refresh serves too: the next caller that sees it due starts the fleet's single refresh.
    """
    if held is not None and shared.expires_at <= held.expires_at:
        return False
    return shared.state(time.monotonic()) in (TokenState.FRESH, TokenState.REFRESH_DUE)


class TokenProvider:
    """Gives out the tokens of one auth family's views: cached, or fetched once per cache key.

    A cache hit takes no lock and does no I/O. From a token's refresh point, one caller refreshes it while the
    others keep using it (async callers and ``background_refresh`` hand the refresh to a worker thread, so nobody
    waits); near expiry callers wait for the single fetch in flight. A failed refresh does not fail callers while
    the old token is still valid. At most ``max_in_flight`` fetches from each issuer run at once; a refusal is
    remembered for ``remember_refusals`` seconds.

    Async callers never fetch on the event loop: the fetch (signing included) runs in a worker thread, and the caller
    awaits it without blocking its loop. A cancelled caller leaves the fetch running; its token serves the next
    caller.
    """

    def __init__(
        self,
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
        self.store = store if store is not None else TokenCache()
        self.refresh = refresh or RefreshPolicy()
        self.background_refresh = background_refresh
        self.on_event = on_event
        self.max_in_flight = max_in_flight
        self.remember_refusals = remember_refusals
        self._flights: dict[str, Flight] = {}
        self._workers = _Workers(max_in_flight)
        self._memory_lock = threading.Lock()
        self._setbacks: OrderedDict[str, _Setback] = OrderedDict()
        #: When the token of a key was dropped after a 401: its successor is a renewal.
        self._renewals: OrderedDict[str, float] = OrderedDict()
        #: The renewal whose rejection was last warned about, per key.
        self._warned_renewals: OrderedDict[str, float | None] = OrderedDict()
        forksafe.register(self)

    # The hot path

    def get_token(self, request: TokenRequest) -> str:
        """Return a valid token for ``request``, fetching one if needed (blocking)."""
        return self._fresh(request) or self._get(request)

    async def aget_token(self, request: TokenRequest) -> str:
        """Return a valid token for ``request`` without blocking the event loop."""
        return self._fresh(request) or await self._aget(request)

    def _fresh(self, request: TokenRequest) -> str | None:
        """The cached token while it needs no refresh: no lock, no I/O."""
        token = self.store.get(request.key)
        if token is not None and time.monotonic() < token.refresh_at:
            if self.on_event is not None:
                self._emit("cache_hit", request)
            return token.value
        return None

    # Cache misses and refreshes

    def _get(self, request: TokenRequest) -> str:
        while True:
            step = self._step(request, in_thread=True)
            if isinstance(step, str):
                return step
            if not step.wait(request.patience):
                raise _wait_timed_out(request)
            value = step.value()
            if value is not None:
                return value

    async def _aget(self, request: TokenRequest) -> str:
        while True:
            step = self._step(request, in_thread=False)
            if isinstance(step, str):
                return step
            if not await step.wait_async(request.patience):
                raise _wait_timed_out(request)
            value = step.value()
            if value is not None:
                return value

    def _step(self, request: TokenRequest, *, in_thread: bool) -> str | Flight:
        """Decide by the cached token's state: a token to use now, or the fetch in flight to wait for.

        A thread that must fetch does so itself; an asyncio caller hands the fetch to a worker thread and waits for
        it. An early refresh makes nobody wait but the thread that runs it, and not even that one with
        ``background_refresh``.
        """
        key = request.key
        token = self.store.get(key)
        now = time.monotonic()
        state = token.state(now) if token is not None else TokenState.EXPIRED
        if token is not None and state is TokenState.FRESH:
            return token.value
        if token is not None and state is TokenState.REFRESH_DUE:
            refresh = self._begin_refresh(key, now)
            if refresh is not None:
                if in_thread and not self.background_refresh:
                    return self._lead(request, refresh, token)
                self._in_worker(request, refresh, token)
            return token.value
        usable = self._unless_refused(request, token, now)
        if usable is not None:
            return usable
        candidate = Flight()
        flight = self._flights.setdefault(key, candidate)  # atomic: of racing callers, one starts the fetch
        if flight is candidate:
            if in_thread:
                return self._lead(request, flight, token)
            self._in_worker(request, flight, token)
        return flight

    def _begin_refresh(self, key: str, now: float) -> Flight | None:
        """The flight of an early refresh this caller should start, or None (paused, or another caller has it)."""
        setback = self._setbacks.get(key)
        if setback is not None and now < setback.until:
            return None
        candidate = Flight()
        return candidate if self._flights.setdefault(key, candidate) is candidate else None

    def _unless_refused(self, request: TokenRequest, token: CachedToken | None, now: float) -> str | None:
        """With a refusal remembered for the key: the still-valid token if there is one, else raise the refusal."""
        setback = self._setbacks.get(request.key)
        if setback is None or setback.error is None or now >= setback.until:
            return None
        if token is not None and self.refresh.usable(token, now):
            return token.value
        if self.on_event is not None:
            self._emit("refused", request, error=setback.error)
        raise copy.copy(setback.error)

    def _in_worker(self, request: TokenRequest, flight: Flight, fallback: CachedToken | None) -> None:
        """Run the fetch in a worker thread.

        In a copy of the caller's context, as ``asyncio.to_thread`` does: a span the caller is in parents the
        ``on_event`` callbacks' spans. A failure reaches the waiters through the flight.
        """
        context = contextvars.copy_context()

        def job() -> None:
            with contextlib.suppress(MaskinportenError):
                context.run(self._lead, request, flight, fallback)

        try:
            self._workers.submit(job)
        except RuntimeError as exc:  # the interpreter is shutting down: no new thread can start
            self._end(request.key, flight, None, NetworkError(f"no worker thread to fetch a token: {exc}"))

    def _lead(self, request: TokenRequest, flight: Flight, fallback: CachedToken | None) -> str:
        """Fetch the token of ``flight`` (in the caller's thread or a worker), store it and wake the waiters.

        Returns the new token, or the still-usable ``fallback`` when the fetch failed; raises the failure otherwise.
        """
        token: CachedToken | None = None
        error: MaskinportenError | None = None
        try:
            token = self._fetch(request, flight, fallback)
        except MaskinportenError as exc:
            error = exc
            token = self._failed(request, flight, fallback, exc)
        finally:
            self._end(request.key, flight, token, error)
        if token is None:
            assert error is not None
            raise error
        return token.value

    def _fetch(self, request: TokenRequest, flight: Flight, fallback: CachedToken | None) -> CachedToken:
        key = request.key
        with request.source.slots:
            flight.start()
            with self.store.fetching(key, request.patience):
                shared = self.store.load(key)
                if shared is not None and _newer_and_usable(shared, fallback):
                    return shared  # another process of the fleet fetched it
                renewal = key in self._renewals
                sent_at = time.monotonic()  # after any wait for the fleet's lease: the token's life starts here
                response = request.fetch()
                token = self.refresh.schedule(response.access_token, response.expires_in, sent_at, renewal=renewal)
                self.store.put(key, token)
        with self._memory_lock:
            self._setbacks.pop(key, None)
            if renewal:
                self._renewals.pop(key, None)
        duration = flight.duration() or 0.0
        claims = request.claims
        logger.info(
            "%s token obtained: client_id=%s scopes=%s customer=%s duration=%.0fms expires_in=%ds",
            request.source.name.capitalize(),
            claims.client_id,
            " ".join(claims.scopes),
            claims.consumer_org or claims.systemuser_org,
            duration * 1000,
            response.expires_in,
        )
        if self.on_event is not None:
            self._emit("fetched", request, duration=duration, expires_in=response.expires_in)
        return token

    def _failed(
        self, request: TokenRequest, flight: Flight, fallback: CachedToken | None, error: MaskinportenError
    ) -> CachedToken | None:
        """Remember what the failure teaches; return ``fallback`` while it is still usable, else None."""
        now = time.monotonic()
        duration = flight.duration()
        refusal = error if isinstance(error, TokenRequestError) and error.refusal else None
        if refusal is not None and self.remember_refusals > 0:
            self._remember(request.key, _Setback(now + self.remember_refusals, refusal))
        if fallback is not None and self.refresh.usable(fallback, now):
            if refusal is None:  # try again early, but not at once, and before the token must be refreshed
                pause = min(self.refresh.failure_cooldown, max(0.0, fallback.must_refresh_at - now) / 2)
                self._remember(request.key, _Setback(now + pause, None))
            logger.warning("early token refresh failed; still using the valid token: %s", error)
            if self.on_event is not None:
                self._emit("refresh_failed", request, duration=duration, error=error)
            return fallback
        # A refusal is the caller's answer (check() reports it as data): the caller decides whether to log it.
        level = logging.DEBUG if refusal is not None else logging.WARNING
        logger.log(level, "%s token request failed: %s", request.source.name.capitalize(), error)
        if self.on_event is not None:
            self._emit("fetch_failed", request, duration=duration, error=error)
        return None

    def _end(self, key: str, flight: Flight, token: CachedToken | None, error: BaseException | None) -> None:
        """Retire ``flight`` and wake its waiters with the outcome."""
        if self._flights.get(key) is flight:
            self._flights.pop(key, None)
        flight.finish(token, error)

    # 401s and refusals

    def reject(self, request: TokenRequest, value: str, on_drop: Callable[[], object] | None = None) -> bool:
        """The API answered 401 to ``value``, the token of ``request``: return whether a renewed token may be sent.

        The token is renewed at most once: of a burst of 401s for one token only the first drops it (and calls
        ``on_drop``), and the others resend with whatever token the key has then. A renewed token that is rejected
        too stays cached and is not renewed while it is younger than ``remember_refusals``: a new token would not be
        accepted either, and an API that answers 401 to everything would otherwise cost a grant per request. Its 401
        goes back to the caller. The rule holds across processes that share a store, since the token carries when
        it was renewed.
        """
        key = request.key
        held = self.store.get(key)
        if held is None or held.value != value:
            return True  # renewed already, or being fetched: the resend waits for that token
        now = time.monotonic()
        if held.renewed_at is not None and now - held.renewed_at < self.remember_refusals:
            self._warn_renewal_rejected(request, held)
            return False
        if self.store.invalidate(key, value):
            with self._memory_lock:
                _bounded_put(self._renewals, key, now)
            logger.info("the API rejected the cached %s token (401); fetching a new one", request.source.name)
            if on_drop is not None:
                on_drop()
        return True

    def _warn_renewal_rejected(self, request: TokenRequest, token: CachedToken) -> None:
        """Log once per renewed token that the API rejected it too."""
        with self._memory_lock:
            if self._warned_renewals.get(request.key) == token.renewed_at:
                return
            _bounded_put(self._warned_renewals, request.key, token.renewed_at)
        claims = request.claims
        logger.warning(
            "the API rejected a renewed %s token too (401): client_id=%s scopes=%s customer=%s; not renewing it for "
            "%.0f s. A new token would not help: check the scope the API wants, resource (the audience), and the "
            "customer's delegation or system user at the API's side",
            request.source.name,
            claims.client_id,
            " ".join(claims.scopes),
            claims.consumer_org or claims.systemuser_org,
            self.remember_refusals,
        )

    def forget_refusal(self, key: str) -> None:
        """Forget a refusal remembered for ``key``, so that the next call asks again."""
        with self._memory_lock:
            setback = self._setbacks.get(key)
            if setback is not None and setback.error is not None:
                del self._setbacks[key]

    def _remember(self, key: str, setback: _Setback) -> None:
        with self._memory_lock:
            _bounded_put(self._setbacks, key, setback)

    def _emit(
        self,
        kind: EventKind,
        request: TokenRequest,
        *,
        duration: float | None = None,
        expires_in: float | None = None,
        error: MaskinportenError | None = None,
    ) -> None:
        assert self.on_event is not None
        claims = request.claims
        event = TokenEvent(
            kind,
            claims.client_id,
            claims.scopes,
            claims.consumer_org,
            duration,
            expires_in,
            error,
            claims.systemuser_org,
            request.source.name,
        )
        try:
            self.on_event(event)
        except Exception:
            logger.exception("the on_event callback failed")

    # Lifecycle

    def close(self) -> None:
        """Let the worker threads finish and stop; later use starts new ones."""
        self._workers.close()

    def _after_fork(self) -> None:
        # The parent's fetches and worker threads do not exist in the child, and its locks may be held.
        self._flights = {}
        self._memory_lock = threading.Lock()
        self._workers.reset()


def _bounded_put(memory: OrderedDict[str, _T], key: str, value: _T) -> None:
    """Put ``key`` last in ``memory`` and drop the oldest entries beyond :data:`_MAX_REMEMBERED`."""
    memory[key] = value
    memory.move_to_end(key)
    while len(memory) > _MAX_REMEMBERED:
        memory.popitem(last=False)


def _wait_timed_out(request: TokenRequest) -> NetworkError:
    return NetworkError(f"no token arrived within {request.patience:.0f} s from the fetch in progress")
