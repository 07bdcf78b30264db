"""Cached tokens, when to refresh them, and the single token fetch in flight per cache key."""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
from collections.abc import Hashable
from dataclasses import dataclass, field

from . import forksafe
from .errors import ConfigurationError
from .retry import is_finite_number

__all__ = ["CachedToken", "Flight", "RefreshPolicy", "TokenCache"]


@dataclass(frozen=True)
class CachedToken:
    """An access token and its deadlines on the monotonic clock. The token itself is left out of the repr.

    ``refresh_at``: from here one caller refreshes while the others keep using this token.
    ``must_refresh_at``: from here nobody uses it; callers wait for a new one.
    ``expires_at``: the token's end, measured from before its request was sent.
    """

    value: str = field(repr=False)
    expires_at: float
    refresh_at: float
    must_refresh_at: float
    scope: str | None = None


@dataclass(frozen=True)
class RefreshPolicy:
    """When a token is refreshed, as fractions of its lifetime (``expires_in``), so 120-s and 1-hour tokens both work.

    Attributes:
        refresh_window: a token becomes "should refresh" at a random point in this range of its lifetime (the
            jitter keeps a fleet of processes from refreshing in step).
        must_refresh_margin: a token is not used in this last fraction of its lifetime...
        min_margin: ...but at least this many seconds before expiry...
        max_margin: ...and at most this many.
        failure_cooldown: after a failed early refresh, seconds before the next early attempt (at most half the
            time left before "must refresh", so short-lived tokens get another early try).
    """

    refresh_window: tuple[float, float] = (0.5, 0.7)
    must_refresh_margin: float = 0.1
    # Maskinporten's exp is whole seconds from its own clock: a token can end a second or so before our estimate.
    min_margin: float = 2.0
    max_margin: float = 60.0
    failure_cooldown: float = 5.0

    def __post_init__(self) -> None:
        window = self.refresh_window
        if not isinstance(window, (tuple, list)) or len(window) != 2 or not all(map(is_finite_number, window)):
            raise ConfigurationError(
                "refresh.refresh_window", f"must be a pair of fractions (low, high), got {window!r}"
            )
        for name in ("must_refresh_margin", "min_margin", "max_margin", "failure_cooldown"):
            if not is_finite_number(getattr(self, name)):
                raise ConfigurationError(f"refresh.{name}", f"must be a finite number, got {getattr(self, name)!r}")
        low, high = window
        if not 0 < low <= high < 1:
            raise ConfigurationError("refresh.refresh_window", f"must satisfy 0 < low <= high < 1, got {low, high}")
        if not 0 <= self.must_refresh_margin < 1:
            raise ConfigurationError("refresh.must_refresh_margin", "must be a fraction in [0, 1)")
        if not 0 <= self.min_margin <= self.max_margin:
            raise ConfigurationError("refresh.min_margin", "must be between 0 and max_margin")
        if self.failure_cooldown < 0:
            raise ConfigurationError("refresh.failure_cooldown", "must not be negative")

    def schedule(self, value: str, expires_in: float, sent_at: float, scope: str | None = None) -> CachedToken:
        """Return the cached form of a token that was requested at monotonic time ``sent_at``."""
        margin = min(max(expires_in * self.must_refresh_margin, self.min_margin), self.max_margin, expires_in / 2)
        must_refresh_at = sent_at + expires_in - margin
        refresh_at = sent_at + expires_in * random.uniform(*self.refresh_window)  # noqa: S311 - jitter
        return CachedToken(
            value=value,
            expires_at=sent_at + expires_in,
            refresh_at=min(refresh_at, must_refresh_at),
            must_refresh_at=must_refresh_at,
            scope=scope,
        )


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Flight:
    """One token fetch in progress. Threads and tasks on any event loop wait for it without holding a lock.

    It ends with a token, an error, or neither (the fetching caller was cancelled: a waiter then fetches itself).
    """

    def __init__(self) -> None:
        self.token: CachedToken | None = None
        self.error: BaseException | None = None
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def finish(self, token: CachedToken | None = None, error: BaseException | None = None) -> None:
        """Record the outcome and wake every waiter, on whichever thread or event loop it waits."""
        with self._lock:
            self.token, self.error = token, error
            self._done.set()
            waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            with contextlib.suppress(RuntimeError):  # that loop has closed: nobody waits there any more
                loop.call_soon_threadsafe(_resolve, future)

    def wait(self, timeout: float) -> bool:
        """Block the calling thread until the flight ends; return False on timeout."""
        return self._done.wait(timeout)

    async def wait_async(self, timeout: float) -> bool:
        """Wait in the running event loop until the flight ends; return False on timeout."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._done.is_set():
                return True
            self._waiters.append((loop, future))
        try:
            await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            return False
        return True


class TokenCache:
    """An in-memory token cache shared by the auth objects given the same instance (``with_consumer_org`` does).

    Reads take no lock (a dict lookup); writes, compare-and-invalidate and starting a fetch take a short one.
    At most one fetch per cache key is in flight; everyone else who needs that key waits for it.
    """

    def __init__(self) -> None:
        self._tokens: dict[Hashable, CachedToken] = {}
        self._flights: dict[Hashable, Flight] = {}
        self._lock = threading.Lock()
        forksafe.register(self)

    def get(self, key: Hashable) -> CachedToken | None:
        """Return the cached token for ``key``, expired or not, or None."""
        return self._tokens.get(key)

    def begin_fetch(self, key: Hashable, *, join: bool) -> tuple[Flight | None, bool]:
        """Start the fetch for ``key``, or find the one in flight.

        Returns ``(flight, True)`` when the caller must fetch, ``(flight, False)`` when it should wait for another
        caller's fetch, and ``(None, False)`` when a fetch is in flight and ``join`` is False.
        """
        with self._lock:
            flight = self._flights.get(key)
            if flight is not None:
                return (flight if join else None), False
            flight = self._flights[key] = Flight()
            return flight, True

    def end_fetch(
        self, key: Hashable, flight: Flight, token: CachedToken | None = None, error: BaseException | None = None
    ) -> None:
        """Store the fetched token (if any), retire ``flight`` and wake its waiters."""
        with self._lock:
            if token is not None:
                current = self._tokens.get(key)
                if current is None or current.expires_at <= token.expires_at:
                    self._tokens[key] = token
            if self._flights.get(key) is flight:
                del self._flights[key]
        flight.finish(token, error)

    def invalidate(self, key: Hashable, value: str) -> bool:
        """Drop the token for ``key`` only if it is still ``value``; return whether it was dropped.

        The API's 401 names the token it rejected, so a burst of 401s for one token drops it once and never
        drops the fresh token that replaced it.
        """
        with self._lock:
            current = self._tokens.get(key)
            if current is not None and current.value == value:
                del self._tokens[key]
                return True
            return False

    def clear(self) -> None:
        """Forget every token."""
        with self._lock:
            self._tokens.clear()

    def _after_fork(self) -> None:
        # The parent's fetches in flight will never finish here: forget them and any lock a thread held.
        self._lock = threading.Lock()
        self._flights = {}

    def __repr__(self) -> str:
        return f"TokenCache(<{len(self._tokens)} tokens>)"
