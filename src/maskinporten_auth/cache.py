"""Cached tokens, when to refresh them, and where they are stored.

:class:`TokenStore` is the small interface the token provider needs from a cache; :class:`TokenCache` is the
bounded in-memory store every auth family gets by default. A store shared by a fleet of processes (Redis, Valkey)
implements the same interface, keeping a copy in memory for the hot path.
"""

from __future__ import annotations

import abc
import contextlib
import enum
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from . import forksafe
from .checks import is_finite_number, validate_count
from .errors import ConfigurationError

__all__ = ["DEFAULT_MAX_ENTRIES", "CachedToken", "RefreshPolicy", "TokenCache", "TokenState", "TokenStore"]

DEFAULT_MAX_ENTRIES = 50_000
"""How many tokens a :class:`TokenCache` holds by default: about 65 MB with 1-KB tokens."""


class TokenState(enum.Enum):
    """Where a cached token is in its life, and so what a caller does with it."""

    FRESH = "fresh"
    """Use it."""
    REFRESH_DUE = "refresh due"
    """Use it, and have one caller (or a background worker) fetch its successor."""
    MUST_REFRESH = "must refresh"
    """Still valid, but too close to its end to send: wait for a new one (or use it if the refresh fails)."""
    EXPIRED = "expired"
    """Gone: wait for a new one."""


@dataclass(frozen=True, slots=True)
class CachedToken:
    """An access token and its deadlines on this process's monotonic clock. The token is left out of the repr.

    A store shared between processes keeps the deadlines as wall-clock times (monotonic clocks differ between
    processes) and converts on the way in and out.

    Attributes:
        value: the access token.
        expires_at: the token's end, measured from before its request was sent.
        refresh_at: from here one caller refreshes while the others keep using this token.
        must_refresh_at: from here nobody sends it; callers wait for a new one.
        renewed_at: when the token was requested to replace one that an API rejected with 401, or None. A renewal
            that is rejected too pauses renewal for the view: a new token would not be accepted either.
    """

    value: str = field(repr=False)
    expires_at: float
    refresh_at: float
    must_refresh_at: float
    renewed_at: float | None = None

    def state(self, now: float) -> TokenState:
        """The token's state at monotonic time ``now``."""
        if now < self.refresh_at:
            return TokenState.FRESH
        if now < self.must_refresh_at:
            return TokenState.REFRESH_DUE
        if now < self.expires_at:
            return TokenState.MUST_REFRESH
        return TokenState.EXPIRED


@dataclass(frozen=True)
class RefreshPolicy:
    """When a token is refreshed, as fractions of its lifetime (``expires_in``), so 120-s and 1-hour tokens both work.

    Attributes:
        refresh_window: a token becomes "refresh due" at a random point in this range of its lifetime (the
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

    def schedule(self, value: str, expires_in: float, sent_at: float, *, renewal: bool = False) -> CachedToken:
        """Return the cached form of a token that was requested at monotonic time ``sent_at``.

        ``renewal``: the token replaces one that an API rejected with 401.
        """
        margin = min(max(expires_in * self.must_refresh_margin, self.min_margin), self.max_margin, expires_in / 2)
        must_refresh_at = sent_at + expires_in - margin
        refresh_at = sent_at + expires_in * random.uniform(*self.refresh_window)  # noqa: S311 - jitter
        return CachedToken(
            value=value,
            expires_at=sent_at + expires_in,
            refresh_at=min(refresh_at, must_refresh_at),
            must_refresh_at=must_refresh_at,
            renewed_at=sent_at if renewal else None,
        )

    def usable(self, token: CachedToken, now: float) -> bool:
        """Whether ``token`` may still be sent when no successor could be had (a refresh or a fetch failed).

        Until ``min_margin`` before its estimated end (less for a token whose whole margin is shorter): the estimate
        counts from before the request was sent, but the issuer's ``exp`` is whole seconds of its own clock.
        """
        return now < token.expires_at - min(self.min_margin, token.expires_at - token.must_refresh_at)


class TokenStore(abc.ABC):
    """Where an auth family keeps its tokens, by cache key (a string computed from configuration alone).

    The provider calls :meth:`get` on every request and :meth:`invalidate` when an API answers 401, both possibly
    on an event loop: they must answer from memory, without I/O (a short lock at most). Everything else is called
    only when a token is missing or due for refresh, from a thread that may block (never from an event loop), so
    a store backed by a server may do I/O there.
    """

    @abc.abstractmethod
    def get(self, key: str) -> CachedToken | None:
        """Return the token this process holds for ``key`` (in any state), or None. No I/O, no lock."""

    def load(self, key: str) -> CachedToken | None:
        """Return the newest token for ``key`` anywhere the store reaches (a shared server), or None."""
        return self.get(key)

    @abc.abstractmethod
    def put(self, key: str, token: CachedToken) -> None:
        """Store ``token`` for ``key``, unless the store already holds one that lives longer."""

    @abc.abstractmethod
    def invalidate(self, key: str, value: str) -> bool:
        """Drop the token for ``key`` only if it is still ``value``; return whether it was dropped.

        The API's 401 names the token it rejected, so a burst of 401s for one token drops it once and never drops
        the fresh token that replaced it.
        """

    @abc.abstractmethod
    def clear(self) -> None:
        """Forget every token."""

    def check(self) -> str:
        """Try what the store does with a server, and describe it; raise the server's error if a step fails.

        For ``maskinporten doctor``, never called on the hot path. A store that keeps its tokens in this process
        has nothing to try.
        """
        return "tokens are kept in this process only"

    @contextlib.contextmanager
    def fetching(self, key: str, timeout: float) -> Iterator[None]:
        """Hold the right to fetch ``key``'s token while the block runs.

        The provider already lets one thread or task of this process fetch a key at a time. A store shared by
        several processes takes a lease in its server here, so that one process of the fleet fetches while the
        others wait (at most ``timeout`` seconds) and then :meth:`load` what it stored. The default does nothing.
        """
        yield


class _Unused:
    """A cached token not used since it was stored or since the last eviction sweep passed it.

    A used token is held as it is, so that a hit reads nothing but the token; its first use since the last sweep
    swaps this wrapper for it.
    """

    __slots__ = ("token",)

    def __init__(self, token: CachedToken) -> None:
        self.token = token


def _token(held: CachedToken | _Unused) -> CachedToken:
    return held.token if isinstance(held, _Unused) else held


class TokenCache(TokenStore):
    """A bounded in-memory token store, shared by every view of an auth family (``with_consumer_org``, ...).

    A hit takes no lock and writes nothing: recency is kept the way the CLOCK algorithm keeps it (an approximation
    of least recently used), not by reordering on every hit. A token's first use after it is stored, and after each
    eviction sweep that passes it, marks it used, under the lock. When a new token would exceed ``max_entries``,
    expired tokens are dropped first, then, oldest first, tokens not used since the last sweep (a used one gets a
    second chance; the new one is kept), one percent of the bound at a time so that the sweep's cost is spread over
    many inserts.
    """

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        self.max_entries = validate_count(max_entries, "max_entries")
        self._entries: dict[str, CachedToken | _Unused] = {}  # oldest first
        self._lock = threading.Lock()
        forksafe.register(self)

    def get(self, key: str) -> CachedToken | None:
        """Return the token held for ``key``, and mark it used."""
        held = self._entries.get(key)
        if not isinstance(held, _Unused):
            return held  # None, or a token used since the last sweep
        with self._lock:  # once per token per sweep; the lock keeps a newer token put meanwhile from being undone
            if self._entries.get(key) is held:
                self._entries[key] = held.token
        return held.token

    def put(self, key: str, token: CachedToken) -> None:
        """Store ``token`` for ``key`` unless a longer-lived one is already there; evict if full."""
        with self._lock:
            current = self._entries.get(key)
            if current is not None:
                if _token(current).expires_at > token.expires_at:
                    return
                del self._entries[key]  # the new token goes to the end: it is the newest
            self._entries[key] = _Unused(token)
            if len(self._entries) > self.max_entries:
                self._evict(key)

    def _evict(self, newest: str) -> None:
        """Drop expired tokens, then down to the bound less one percent; never ``newest``, the token just put."""
        now = time.monotonic()
        for key in [key for key, held in self._entries.items() if _token(held).expires_at <= now]:
            del self._entries[key]
        excess = len(self._entries) - (self.max_entries - max(1, self.max_entries // 100))
        for second_chance in (True, False):  # the first pass passes over used tokens, marking them unused
            for key, held in list(self._entries.items()):
                if excess <= 0:
                    return
                if key == newest:
                    continue
                if second_chance and not isinstance(held, _Unused):
                    self._entries[key] = _Unused(held)
                    continue
                del self._entries[key]
                excess -= 1

    def invalidate(self, key: str, value: str) -> bool:
        """Drop the token for ``key`` only if it is still ``value``."""
        with self._lock:
            current = self._entries.get(key)
            if current is not None and _token(current).value == value:
                del self._entries[key]
                return True
            return False

    def clear(self) -> None:
        """Forget every token."""
        with self._lock:
            self._entries.clear()

    def _after_fork(self) -> None:
        self._lock = threading.Lock()  # a thread of the parent may have held it

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"TokenCache(<{len(self._entries)} of at most {self.max_entries} tokens>)"
