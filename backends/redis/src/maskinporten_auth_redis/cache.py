"""RedisTokenCache: one token per customer per lifetime across a fleet of processes, on Redis or Valkey."""

from __future__ import annotations

import contextlib
import functools
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

import redis
import redis.asyncio
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from maskinporten_auth import ConfigurationError, forksafe
from maskinporten_auth.cache import DEFAULT_MAX_ENTRIES, CachedToken, TokenCache, TokenState, TokenStore
from maskinporten_auth.checks import validate_seconds

from .sealing import Sealer, parse_encryption_key

__all__ = ["DEFAULT_LEASE_TIME", "DEFAULT_RETRY_INTERVAL", "DEFAULT_TIMEOUT", "RedisTokenCache", "StoreEvent"]

logger = logging.getLogger("maskinporten_auth.redis")

DEFAULT_LEASE_TIME = 10.0
DEFAULT_TIMEOUT = 0.5
DEFAULT_RETRY_INTERVAL = 2.0
SCHEMES = ("redis", "rediss", "unix")

_T = TypeVar("_T")

#: Set a key to ARGV[2] for ARGV[3] ms only if it still holds ARGV[1]: an entry's or a lease's exact bytes as read.
_REPLACE_IF_EQUAL = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""
#: Delete an entry only if it still holds the given bytes.
_DELETE_IF_EQUAL = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
#: Take a lease (ARGV[1], for ARGV[2] ms) if nobody holds it; return the holder's value either way.
_TAKE_LEASE = """
local holder = redis.call('GET', KEYS[1])
if holder then return holder end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ARGV[1]
"""
#: Extend a lease only if this owner (the value's prefix ARGV[1]) still holds it, under a new value (ARGV[2]).
_RENEW_IF_OWNER = """
local holder = redis.call('GET', KEYS[1])
if not holder or string.sub(holder, 1, #ARGV[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""
#: Release a lease only if this owner (the value's prefix ARGV[1]) still holds it.
_RELEASE_IF_OWNER = """
local holder = redis.call('GET', KEYS[1])
if holder and string.sub(holder, 1, #ARGV[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
#: Delete a key that holds something other than a string (a list, a set, ...), and nothing else.
_DELETE_IF_NOT_STRING = """
local value = redis.pcall('GET', KEYS[1])
if type(value) == 'table' and value.err and string.find(value.err, 'WRONGTYPE', 1, true) then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
#: How often a write reads, compares and tries again when the entry changed under it (another writer).
_WRITE_ATTEMPTS = 3


@dataclass(frozen=True)
class StoreEvent:
    """What happened to the shared store, for metrics (``on_event=``). Never holds a token or a key.

    ``kind`` is ``"unavailable"`` (the server failed or timed out; each process fetches its own tokens until it
    answers again), ``"available"`` (it answers again) or ``"entry_rejected"`` (an entry was unreadable, foreign,
    tampered with, expired by its sealed expiry or not a string; it was ignored and removed or replaced).
    ``detail`` says why, e.g. ``"TimeoutError: Timeout reading from socket"``.
    """

    kind: Literal["unavailable", "available", "entry_rejected"]
    detail: str


def _lease_value(owner: str) -> str:
    """A lease's value: its owner's id and a part new at each renewal, by which waiters tell a live holder."""
    return f"{owner}:{uuid.uuid4().hex[:12]}"


def _server_address(client: redis.Redis) -> str:
    """Where ``client`` connects, without credentials."""
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"unix://{kwargs['path']}"
    return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"


class RedisTokenCache(TokenStore):
    """A token store shared by every process that points at the same Redis or Valkey server and encryption key.

    Two levels: the bounded in-memory :class:`~maskinporten_auth.cache.TokenCache` answers every cache hit (no
    network); the server is read on a local miss and written after every fetch. When a token is missing or due,
    one process of the fleet takes a lease on it in the server and fetches; the others wait (polling with backoff)
    until its token appears or the lease goes, and at most ``lease_time`` seconds. The lease expires by itself
    after ``lease_time`` and is renewed while its holder is fetching; one that nobody renews for that long (a
    process killed mid-fetch, or a lease planted in the server) is taken over, whatever the server says its time
    to live is.

    Entries are sealed with AES-256-GCM under ``encryption_key`` and named by a keyed digest of the cache key: the
    server holds no token, organisation number or scope in clear, and an entry expires with its token. An entry is
    trusted only if it opens and has not expired by the expiry sealed in it, whatever time to live the server
    gives it; anything else under an entry's or a lease's name is removed and reported. When the
    server is down, slow (``timeout``) or answers garbage, the process fetches for itself and keeps serving; it logs
    one warning per outage, emits :class:`StoreEvent`, and tries the server again ``retry_interval`` seconds later.

    Pass as ``cache=`` to :class:`~maskinporten_auth.MaskinportenAuth`; build it with :meth:`from_url`, or from a
    configured ``redis.Redis`` (Sentinel, a custom pool). An asyncio ``redis.asyncio.Redis`` is refused: the store
    is only called from threads that may block, never on an event loop, so a sync client serves sync and asyncio
    applications alike, and an asyncio client, bound to its own loop, cannot be used from those threads.

    Args:
        client: a ``redis.Redis``; give it short socket timeouts (:meth:`from_url` uses ``timeout``).
        encryption_key: 32 random bytes, or their base64; required unless ``insecure_no_encryption``.
        insecure_no_encryption: store tokens in clear, readable by anyone who can read the server: only for a
            development server on your own machine.
        namespace: the prefix of every key name, to keep these entries apart from other data on the server.
        lease_time: seconds after which a lease that is not renewed expires (a holder that died), and the longest
            a process waits for another's fetch.
        retry_interval: seconds the server is left alone after it failed, before it is tried again.
        max_entries: the bound of the in-memory level.
        on_event: a callback receiving :class:`StoreEvent`.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        encryption_key: bytes | str | None = None,
        insecure_no_encryption: bool = False,
        namespace: str = "maskinporten-auth",
        lease_time: float = DEFAULT_LEASE_TIME,
        retry_interval: float = DEFAULT_RETRY_INTERVAL,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        on_event: Callable[[StoreEvent], None] | None = None,
    ) -> None:
        given: object = client  # checked at run time: the annotation does not stop a caller
        if isinstance(given, redis.asyncio.Redis):
            raise ConfigurationError(
                "client",
                "must be a sync redis.Redis, not redis.asyncio.Redis: the token store is only called from threads "
                "that may block (never on an event loop), so a sync client serves asyncio applications too; pass "
                "RedisTokenCache.from_url(url, ...) or redis.Redis(...) with the same settings",
            )
        if not isinstance(given, redis.Redis):
            raise ConfigurationError("client", f"must be a redis.Redis, got {type(client).__name__}")
        if client.connection_pool.connection_kwargs.get("decode_responses"):
            raise ConfigurationError("client", "must not decode responses: entries are bytes (decode_responses=False)")
        if insecure_no_encryption is not True and insecure_no_encryption is not False:
            raise ConfigurationError("insecure_no_encryption", "must be True or False")
        if insecure_no_encryption and encryption_key is not None:
            raise ConfigurationError("encryption_key", "give either it or insecure_no_encryption=True, not both")
        if not insecure_no_encryption and encryption_key is None:
            raise ConfigurationError(
                "encryption_key",
                "is required: tokens in the shared store are secrets; give 32 random bytes or their base64 "
                "(MASKINPORTEN_CACHE_KEY or MASKINPORTEN_CACHE_KEY_FILE from the environment), or "
                "insecure_no_encryption=True for a development server on your own machine",
            )
        if not isinstance(namespace, str) or not namespace or any(c.isspace() for c in namespace):
            raise ConfigurationError("namespace", f"must be a non-empty string without whitespace, got {namespace!r}")
        if on_event is not None and not callable(on_event):
            raise ConfigurationError("on_event", "must be callable")
        self.client = client
        self.lease_time = validate_seconds(lease_time, "lease_time", minimum=0.1)
        self.retry_interval = validate_seconds(retry_interval, "retry_interval", minimum=0.0)
        self.on_event = on_event
        self._local = TokenCache(max_entries)
        self._sealer = Sealer(None if encryption_key is None else parse_encryption_key(encryption_key))
        self._prefix = f"{namespace}:{self._sealer.generation}:"
        self._replace_if_equal = client.register_script(_REPLACE_IF_EQUAL)
        self._delete_if_equal = client.register_script(_DELETE_IF_EQUAL)
        self._take_lease = client.register_script(_TAKE_LEASE)
        self._renew_if_owner = client.register_script(_RENEW_IF_OWNER)
        self._release_if_owner = client.register_script(_RELEASE_IF_OWNER)
        self._delete_if_not_string = client.register_script(_DELETE_IF_NOT_STRING)
        #: The value the API rejected (401), per cache key: not to be loaded back from the server.
        self._rejected: dict[str, str] = {}
        self._state_lock = threading.Lock()
        self._down = False
        self._skip_until = 0.0
        self._warned_entry = False
        self._leases: dict[str, str] = {}
        self._leases_lock = threading.Lock()
        self._renewer: threading.Thread | None = None
        forksafe.register(self)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        encryption_key: bytes | str | None = None,
        insecure_no_encryption: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
        namespace: str = "maskinporten-auth",
        lease_time: float = DEFAULT_LEASE_TIME,
        retry_interval: float = DEFAULT_RETRY_INTERVAL,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        on_event: Callable[[StoreEvent], None] | None = None,
        **client_options: Any,
    ) -> RedisTokenCache:
        """Connect to ``redis://``, ``rediss://`` (TLS) or ``unix://`` ``url`` (user, password and db in it).

        ``timeout`` bounds each connect and each command, so a slow server costs a miss little; a failed command is
        retried once at once (a connection the server dropped on restart). ``client_options`` go to
        ``redis.Redis.from_url`` (``ssl_ca_certs``, ``username``, ...). The other arguments are the constructor's.
        """
        if not isinstance(url, str):
            raise ConfigurationError("url", f"must be a string, got {type(url).__name__}")
        try:
            scheme = urlsplit(url).scheme.lower()
        except ValueError:
            scheme = ""
        if scheme not in SCHEMES:
            raise ConfigurationError("url", "must start with redis://, rediss:// or unix://")
        timeout = validate_seconds(timeout, "timeout", minimum=0.001)
        options: dict[str, Any] = {
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            "retry": Retry(ExponentialBackoff(cap=0.05, base=0.01), retries=1),
            "health_check_interval": 30,
            **client_options,
        }
        try:
            client = redis.Redis.from_url(url, **options)
        except ValueError:  # its message may quote the URL, password included
            raise ConfigurationError("url", "is not a valid Redis URL: check its host, port, db and query") from None
        return cls(
            client,
            encryption_key=encryption_key,
            insecure_no_encryption=insecure_no_encryption,
            namespace=namespace,
            lease_time=lease_time,
            retry_interval=retry_interval,
            max_entries=max_entries,
            on_event=on_event,
        )

    @property
    def encrypted(self) -> bool:
        """Whether tokens are sealed in the server (False only with ``insecure_no_encryption``)."""
        return self._sealer.encrypted

    @property
    def available(self) -> bool:
        """Whether the server answered the last time it was asked."""
        return not self._down

    def entry_name(self, key: str) -> str:
        """The server's key name of the token for cache key ``key`` (a keyed digest; for operators and tests)."""
        return f"{self._prefix}token:{self._sealer.name(key)}"

    def lease_name(self, key: str) -> str:
        """The server's key name of the fetch lease for cache key ``key``."""
        return f"{self._prefix}lease:{self._sealer.name(key)}"

    # The in-process level: the hot path

    def get(self, key: str) -> CachedToken | None:
        """Return the token this process holds for ``key``, from memory (no network, no lock)."""
        return self._local.get(key)

    # The shared level: called from threads that may block

    def load(self, key: str) -> CachedToken | None:
        """Return the newer of this process's token and the server's for ``key``; the server's is kept locally."""
        local = self._local.get(key)
        name = self.entry_name(key)
        blob = self._server(name, lambda: self.client.get(name), None)
        if not isinstance(blob, bytes):
            return local
        shared = self._trusted(name, blob)
        rejected = self._rejected.get(key)
        if shared is None or shared.value == rejected:
            self._server(name, lambda: self._delete_if_equal(keys=[name], args=[blob]), 0)
            return local
        if local is None or shared.expires_at > local.expires_at:
            self._local.put(key, shared)
            return shared
        return local

    def put(self, key: str, token: CachedToken) -> None:
        """Keep ``token`` in memory and in the server, unless either holds one that lives longer.

        The server's entry is compared by its sealed expiry, never by the server's time to live (which anyone who
        can write to the server sets): an entry that does not open, has expired, or holds the token the API
        rejected is replaced, and only if it is still the exact bytes read.
        """
        rejected = self._rejected.pop(key, None)
        self._local.put(key, token)
        name = self.entry_name(key)
        blob, ttl_ms = self._sealer.seal(name, token)
        if ttl_ms <= 0:
            return
        for _ in range(_WRITE_ATTEMPTS):
            current = self._server(name, lambda: self.client.get(name), None)
            if self._down:
                return
            if not isinstance(current, bytes):
                write = functools.partial(self.client.set, name, blob, nx=True, px=ttl_ms)
            else:
                shared = self._trusted(name, current)
                if shared is not None and shared.value != rejected and shared.expires_at >= token.expires_at:
                    return  # the fleet's token lives at least as long
                write = functools.partial(self._replace_if_equal, keys=[name], args=[current, blob, ttl_ms])
            if self._server(name, write, None):
                return

    def invalidate(self, key: str, value: str) -> bool:
        """Drop ``value`` for ``key`` from memory; the server's copy is dropped by the next :meth:`load`.

        Called on the API's 401, possibly on an event loop, so it does no I/O.
        """
        self._rejected[key] = value
        return self._local.invalidate(key, value)

    def clear(self) -> None:
        """Forget every token in memory and every token of this encryption key and namespace in the server."""
        self._local.clear()
        self._rejected.clear()

        def delete_all() -> None:
            names = list(self.client.scan_iter(match=f"{self._prefix}token:*", count=1000))
            for start in range(0, len(names), 1000):
                self.client.delete(*names[start : start + 1000])

        self._server(None, delete_all, None)

    def check(self) -> str:
        """Do once what a fetch does with the server, under a probe key, and say where; raise the first error.

        Writes a sealed entry, reads it back and opens it, takes and releases a lease, and removes the entry: the
        commands (``SET``, ``GET``, ``EVALSHA``/``EVAL``, ``DEL``) an ACL must allow. Unlike the hot path,
        a failure here is raised, not absorbed.
        """
        probe = f"maskinporten-doctor:{uuid.uuid4().hex}"
        name, lease = self.entry_name(probe), self.lease_name(probe)
        now = time.monotonic()
        token = CachedToken(uuid.uuid4().hex, expires_at=now + 30, refresh_at=now + 20, must_refresh_at=now + 25)
        blob, ttl_ms = self._sealer.seal(name, token)
        if not self.client.set(name, blob, nx=True, px=ttl_ms):
            raise RuntimeError(f"the probe entry {name} was already there")
        try:
            read = self.client.get(name)
            if read != blob:
                raise RuntimeError(f"the probe entry {name} read back differs from what was written")
            if self._sealer.open(name, read).value != token.value:
                raise RuntimeError(f"the probe entry {name} did not open to what was sealed")
            owner = uuid.uuid4().hex
            value = _lease_value(owner)
            if self._take_lease(keys=[lease], args=[value, 10_000]) != value.encode():
                raise RuntimeError(f"the probe lease {lease} was already taken")
            self._release_if_owner(keys=[lease], args=[f"{owner}:"])
        finally:
            self._delete_if_equal(keys=[name], args=[blob])
        sealed = "sealed with AES-256-GCM" if self.encrypted else "NOT encrypted (insecure_no_encryption)"
        return f"{_server_address(self.client)}: wrote, read back and removed a probe entry, {sealed}; lease taken"

    @contextlib.contextmanager
    def fetching(self, key: str, timeout: float) -> Iterator[None]:
        """Hold the fleet's lease on ``key`` while the block fetches, or return once another process's token is in.

        Waits for another holder at most ``lease_time`` seconds (and at most ``timeout``), whatever the server
        says about its lease, then the caller fetches anyway. A live holder renews its lease every third of
        ``lease_time`` under a new value; a lease whose value has not changed for ``lease_time`` is abandoned (its
        holder died, or someone planted it), and the waiter takes it over, by compare-and-set on that value, so that
        it holds the lease while it fetches. A holder that renewed meanwhile keeps its lease, and the waiter fetches
        without one. If the server is unavailable the caller fetches at once, without a lease.
        """
        name = self.lease_name(key)
        owner = uuid.uuid4().hex
        if not self._lease(key, name, _lease_value(owner), timeout):
            yield
            return
        self._hold(name, owner)
        try:
            yield
        finally:
            self._release(name, owner)

    # Leases

    def _lease(self, key: str, name: str, value: str, timeout: float) -> bool:
        """Whether this caller got the lease ``name`` (as ``value``); False once another's token is in or time is up."""
        lease_ms = int(self.lease_time * 1000)
        started = time.monotonic()
        deadline = started + min(timeout, self.lease_time)
        first_seen: bytes | None = None
        pause = 0.005
        while True:
            holder = self._server(name, lambda: self._take_lease(keys=[name], args=[value, lease_ms]), None)
            if holder == value.encode():
                return True
            if self._down:
                return False
            if first_seen is None and isinstance(holder, bytes):
                first_seen = holder
            if time.monotonic() >= deadline:
                break
            token = self.load(key)
            if token is not None and token.state(time.monotonic()) is TokenState.FRESH:
                return False  # another process fetched it: the provider loads it
            time.sleep(min(pause * random.uniform(0.5, 1.0), max(0.0, deadline - time.monotonic())))  # noqa: S311
            pause = min(pause * 2, 0.1)
        if first_seen is None or time.monotonic() - started < self.lease_time:
            return False
        takeover: list[bytes | str | int] = [first_seen, value, lease_ms]  # only if nobody renewed it meanwhile
        return bool(self._server(name, lambda: self._replace_if_equal(keys=[name], args=takeover), 0))

    def _hold(self, name: str, owner: str) -> None:
        with self._leases_lock:
            self._leases[name] = owner
            if self._renewer is None:
                self._renewer = threading.Thread(target=self._renew, name="maskinporten-lease-renewer", daemon=True)
                self._renewer.start()

    def _release(self, name: str, owner: str) -> None:
        with self._leases_lock:
            self._leases.pop(name, None)
        self._server(name, lambda: self._release_if_owner(keys=[name], args=[f"{owner}:"]), 0)

    def _renew(self) -> None:
        """Extend every lease this process holds, every third of ``lease_time``, until it holds none."""
        while True:
            time.sleep(self.lease_time / 3)
            if not self._renew_held():
                return

    def _renew_held(self) -> bool:
        """Extend every lease this process still holds, under a new value; False, ending the renewer, if none."""
        lease_ms = int(self.lease_time * 1000)
        with self._leases_lock:
            leases = dict(self._leases)
            if not leases:
                self._renewer = None
                return False
        for name, owner in leases.items():
            renewal: list[str | int] = [f"{owner}:", _lease_value(owner), lease_ms]
            self._server(name, functools.partial(self._renew_if_owner, keys=[name], args=renewal), 0)
        return True

    # Failure handling

    def _server(self, name: str | None, operation: Callable[[], _T], default: _T) -> _T:
        """Run ``operation`` on key ``name``, or return ``default`` while the server is unavailable or if it fails.

        A value of another type than string under ``name`` (``WRONGTYPE``) is a bad entry, not an outage: it is
        removed and reported, and the server stays in use for every other key.
        """
        if self._down and time.monotonic() < self._skip_until:
            return default
        try:
            result = operation()
        except (redis.RedisError, OSError) as exc:
            if name is not None and isinstance(exc, redis.ResponseError) and str(exc).startswith("WRONGTYPE"):
                self._server(name, lambda: self._delete_if_not_string(keys=[name]), 0)
                self._rejected_entry("a value of another type than a string")
            else:
                self._unavailable(exc)
            return default
        if self._down:
            self._available_again()
        return result

    def _unavailable(self, exc: BaseException) -> None:
        detail = f"{type(exc).__name__}: {exc}"
        with self._state_lock:
            self._skip_until = time.monotonic() + self.retry_interval
            if self._down:
                return
            self._down = True
        logger.warning(
            "the shared token store at %s is unavailable (%s); this process fetches its own tokens until it answers",
            _server_address(self.client),
            detail,
        )
        self._emit(StoreEvent("unavailable", detail))

    def _available_again(self) -> None:
        with self._state_lock:
            if not self._down:
                return
            self._down = False
        logger.warning("the shared token store at %s answers again", _server_address(self.client))
        self._emit(StoreEvent("available", "the server answered"))

    def _trusted(self, name: str, blob: bytes) -> CachedToken | None:
        """The token ``blob`` holds under ``name``; None, reported, if it does not open or has expired."""
        try:
            token = self._sealer.open(name, blob)
        except ValueError as exc:
            self._rejected_entry(str(exc))
            return None
        if token.expires_at <= time.monotonic():  # the server's time to live is not ours: anyone can set it
            self._rejected_entry("expired by its sealed expiry (replayed, or the writer's clock is behind)")
            return None
        return token

    def _rejected_entry(self, why: str) -> None:
        """Report an entry that cannot be trusted (the caller removes or replaces it)."""
        if not self._warned_entry:
            self._warned_entry = True
            logger.warning("ignored and removed an entry of the shared token store: %s (warned once)", why)
        self._emit(StoreEvent("entry_rejected", why))

    def _emit(self, event: StoreEvent) -> None:
        if self.on_event is None:
            return
        try:
            self.on_event(event)
        except Exception:
            logger.exception("the token store's on_event callback failed")

    # Lifecycle

    def close(self) -> None:
        """Close the connections to the server (they reopen when needed)."""
        self.client.close()

    def _after_fork(self) -> None:
        # The parent's leases and renewer thread do not exist in the child; redis-py resets its pool by itself.
        self._leases = {}
        self._leases_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._renewer = None

    def __len__(self) -> int:
        return len(self._local)

    def __repr__(self) -> str:
        sealed = "encrypted" if self.encrypted else "NOT ENCRYPTED"
        return (
            f"RedisTokenCache(<{_server_address(self.client)}>, {sealed}, "
            f"<{len(self._local)} tokens in memory, at most {self._local.max_entries}>)"
        )
