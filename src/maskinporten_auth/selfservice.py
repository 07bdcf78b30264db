"""Digdir's self-service API: the keys registered on an integration, rotation without an outage, the scope catalogue.

:class:`SelfService` reads and changes a client's keys (``/api/v1/clients/{id}/jwks``), rotates them in the one
order that cannot break a running application, and reads the public scope catalogue (``/api/v1/scopes/all``).
It authenticates with an admin :class:`~maskinporten_auth.MaskinportenAuth` whose scopes include
``idporten:dcr.read`` (and ``idporten:dcr.write`` to change keys). Every call has an async twin (``a``-prefixed).

Each operation is written once, as a flow that yields the requests it needs (HTTP calls, probe grants, waits); a
sync and an async driver carry them out, so the two forms cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar, cast

import httpx

from .checks import validate_seconds
from .errors import (
    AccessDeniedError,
    AuthorizationDetailsError,
    ConfigurationError,
    InvalidScopeError,
    MaskinportenError,
    TokenRequestError,
    quoted,
)
from .jwk import b64url_decode
from .signer import Signer

if TYPE_CHECKING:
    from .auth import MaskinportenAuth
    from .environment import Environment

__all__ = [
    "ADMIN_SCOPES",
    "DEFAULT_PREFIX",
    "ENVIRONMENTS",
    "EXPIRY_WARNINGS",
    "MAX_KEYS",
    "ExpiryWatch",
    "KeyExpiry",
    "KeyLimitError",
    "RegisteredKey",
    "RotationError",
    "RotationProgress",
    "RotationResult",
    "ScopeInfo",
    "SelfService",
    "SelfServiceError",
    "SignerReloader",
    "aprobe_key",
    "key_expiry",
    "probe_key",
]

logger = logging.getLogger("maskinporten_auth.selfservice")

ENVIRONMENTS: Final = {"test": "https://api.test.samarbeid.digdir.no", "prod": "https://api.samarbeid.digdir.no"}
DEFAULT_PREFIX: Final = "/api/v1"
ADMIN_SCOPES: Final = ("idporten:dcr.read", "idporten:dcr.write")
#: A client holds at most this many keys.
MAX_KEYS: Final = 5
#: Days before a key's or certificate's expiry at which :class:`ExpiryWatch` warns (once each).
EXPIRY_WARNINGS: Final = (30, 7, 1)
#: Changes reach Maskinporten in 0-2 minutes; a new kid is retried this long before a rotation gives up.
DEFAULT_PROPAGATION_TIMEOUT: Final = 180.0
DEFAULT_POLL_INTERVAL: Final = 5.0
DEFAULT_CATALOGUE_TTL: Final = 3600.0
_DAY: Final = 86400.0


class SelfServiceError(MaskinportenError):
    """The self-service API refused or failed a request.

    Attributes:
        status: the HTTP status, or None when no answer arrived.
        description: the API's own message, on one line, with anything token-like blanked out.
        hint: what to do about it.
        retryable: whether a later attempt may succeed (no answer, 5xx or 429).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        description: str | None = None,
        hint: str | None = None,
        retryable: bool = False,
    ) -> None:
        self.status = status
        self.retryable = retryable
        self.description = description
        self.hint = hint
        parts = [message + (f" [status={status}]" if status else "")]
        if description:
            parts.append(f"The self-service API says: {description}")
        if hint:
            parts.append(f"Hint: {hint}")
        super().__init__(" ".join(parts))


class KeyLimitError(SelfServiceError):
    """Adding the key would leave the client more than :data:`MAX_KEYS` keys; ``prune`` names keys to remove first."""

    def __init__(self, message: str, *, prune: Sequence[str]) -> None:
        self.prune = list(prune)
        super().__init__(
            message,
            hint=f"remove a key first (maskinporten keys remove KID), soonest to expire first: {', '.join(prune)}",
        )


class RotationError(SelfServiceError):
    """Maskinporten did not accept the new key; signing was not switched. ``result`` tells how far it came.

    ``rolled_back`` is True when the key this rotation added was removed again.
    """

    def __init__(self, message: str, *, result: RotationResult, cause: MaskinportenError | None) -> None:
        self.result = result
        self.rolled_back = result.rolled_back
        super().__init__(
            message,
            description=getattr(cause, "description", None) or (str(cause) if cause else None),
            hint="the application still signs with its old key; fix the cause and run the rotation again",
        )


def _utc(timestamp: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc)


@dataclasses.dataclass(frozen=True)
class RegisteredKey:
    """A key registered on a client, as the self-service API shows it.

    ``expires_at`` is None when the API gave no expiry; ``signing`` is True for the key this process signs with
    (when the listing was given a signer).
    """

    kid: str
    alg: str | None
    use: str | None
    expires_at: datetime.datetime | None
    jwk: dict[str, Any]
    signing: bool = False

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any], *, signing_kid: str | None = None) -> RegisteredKey:
        """The key of one entry of a ``/jwks`` answer."""
        exp = jwk.get("exp")
        kid = str(jwk.get("kid", ""))
        return cls(
            kid=kid,
            alg=jwk.get("alg"),
            use=jwk.get("use"),
            expires_at=_utc(float(exp)) if isinstance(exp, (int, float)) and not isinstance(exp, bool) else None,
            jwk=dict(jwk),
            signing=signing_kid is not None and kid == signing_kid,
        )

    @property
    def size(self) -> int | None:
        """The RSA modulus size in bits, or None for a key without one."""
        modulus = self.jwk.get("n")
        return len(b64url_decode(modulus).lstrip(b"\0")) * 8 if isinstance(modulus, str) else None

    def days_left(self, now: datetime.datetime | None = None) -> float | None:
        """Days until the key expires (negative once it has), or None when it has no expiry."""
        if self.expires_at is None:
            return None
        now = now or datetime.datetime.now(datetime.timezone.utc)
        return (self.expires_at - now).total_seconds() / _DAY

    def same_key(self, jwk: Mapping[str, Any]) -> bool:
        """Whether ``jwk`` is this key (same modulus and exponent)."""
        return (self.jwk.get("n"), self.jwk.get("e")) == (jwk.get("n"), jwk.get("e"))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (no key material beyond the public JWK's kid)."""
        days = self.days_left()
        return {
            "kid": self.kid,
            "alg": self.alg,
            "use": self.use,
            "size": self.size,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "days_left": None if days is None else round(days, 2),
            "signing": self.signing,
        }


@dataclasses.dataclass(frozen=True)
class ScopeInfo:
    """One entry of Digdir's scope catalogue (``/api/v1/scopes/all``).

    ``at_max_age`` caps a token's lifetime in seconds (0: Maskinporten's default, 120 s); ``delegation_source`` is
    set when the scope can be delegated through Altinn (only then can ``with_consumer_org`` work for it);
    ``allowed_integration_types`` and ``active`` explain refusals of a scope that is registered.
    """

    name: str
    active: bool
    at_max_age: int
    delegation_source: str | None
    allowed_integration_types: tuple[str, ...]
    token_type: str | None
    requires_user_consent: bool
    supports_european_businesses: bool
    description: str = ""
    owner_orgno: str | None = None
    raw: Mapping[str, Any] = dataclasses.field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any]) -> ScopeInfo:
        """Read one catalogue entry, leniently: a missing field gets its documented default."""
        return cls(
            name=str(entry.get("name", "")),
            active=bool(entry.get("active", True)),
            at_max_age=int(entry.get("at_max_age") or 0),
            delegation_source=entry.get("delegation_source") or None,
            allowed_integration_types=tuple(entry.get("allowed_integration_types") or ()),
            token_type=entry.get("token_type"),
            requires_user_consent=bool(entry.get("requires_user_consent", False)),
            supports_european_businesses=bool(entry.get("supports_european_businesses", False)),
            description=str(entry.get("description") or ""),
            owner_orgno=entry.get("owner_orgno"),
            raw=dict(entry),
        )

    @property
    def token_lifetime(self) -> int:
        """The lifetime, in seconds, to expect of a token for this scope alone."""
        return self.at_max_age or 120

    @property
    def delegable(self) -> bool:
        """Whether a customer can delegate the scope through Altinn (``with_consumer_org``)."""
        return self.delegation_source is not None

    def problems(self) -> list[str]:
        """Why Maskinporten may refuse this scope to a Maskinporten integration, in plain words (empty: none)."""
        found = []
        if not self.active:
            found.append(f"{self.name} is not active: Maskinporten issues no tokens for it")
        if self.allowed_integration_types and "maskinporten" not in self.allowed_integration_types:
            types = ", ".join(self.allowed_integration_types)
            found.append(f"{self.name} allows only the integration types {types}, not maskinporten (MP-201)")
        return found

    def to_dict(self) -> dict[str, Any]:
        """The fields, JSON-ready."""
        fields = dataclasses.asdict(self)
        fields.pop("raw")
        fields["allowed_integration_types"] = list(self.allowed_integration_types)
        fields["token_lifetime"] = self.token_lifetime
        fields["delegable"] = self.delegable
        return fields


@dataclasses.dataclass(frozen=True)
class KeyExpiry:
    """When a key or certificate expires: an event of :class:`ExpiryWatch`, and what :func:`key_expiry` returns.

    ``source`` is ``"key"`` (registered on the integration) or ``"certificate"`` (an enterprise certificate's
    notAfter); ``warning`` is the threshold in days this check crossed (30, 7 or 1), if any.
    """

    kid: str
    expires_at: datetime.datetime
    source: Literal["key", "certificate"]
    client_id: str | None = None
    signing: bool = False
    warning: int | None = None

    def seconds_left(self, now: datetime.datetime | None = None) -> float:
        """Seconds until expiry (negative once expired)."""
        return (self.expires_at - (now or datetime.datetime.now(datetime.timezone.utc))).total_seconds()

    def days_left(self, now: datetime.datetime | None = None) -> float:
        """Days until expiry (negative once expired)."""
        return self.seconds_left(now) / _DAY


@dataclasses.dataclass(frozen=True)
class RotationProgress:
    """One step of a rotation, for ``progress=``.

    ``step`` is ``read``, ``add``, ``wait``, ``verified``, ``switch``, ``remove`` or ``rollback``; ``attempt``
    counts probe grants while waiting.
    """

    step: str
    message: str
    attempt: int = 0


@dataclasses.dataclass(frozen=True)
class RotationResult:
    """What a rotation did (or, with ``dry_run``, would do: ``plan``)."""

    client_id: str
    new_kid: str
    old_kid: str | None
    plan: tuple[str, ...]
    dry_run: bool = False
    added: bool = False
    accepted_at: datetime.datetime | None = None
    attempts: int = 0
    switched: bool = False
    removed: tuple[str, ...] = ()
    rolled_back: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The fields, JSON-ready."""
        fields = dataclasses.asdict(self)
        fields["accepted_at"] = self.accepted_at.isoformat() if self.accepted_at else None
        fields["plan"], fields["removed"] = list(self.plan), list(self.removed)
        return fields


# The requests a flow yields to its driver.


@dataclasses.dataclass(frozen=True)
class _Http:
    method: str
    path: str
    body: Any = None
    admin: bool = True


@dataclasses.dataclass(frozen=True)
class _Probe:
    """A token request signed by ``signer``: the driver answers None when the key was accepted, else the error."""

    client_id: str
    scopes: tuple[str, ...]
    signer: Signer


@dataclasses.dataclass(frozen=True)
class _Sleep:
    seconds: float


@dataclasses.dataclass(frozen=True)
class _PublicJwk:
    """The JWK to register for ``source``: a key service may be asked for the public key, so it is a step."""

    source: Signer | Mapping[str, Any]


_Step = _Http | _Probe | _Sleep | _PublicJwk
T = TypeVar("T")
_Flow = Generator[_Step, Any, T]


def _unknown_kid(error: MaskinportenError) -> bool:
    return "unknown key identifier" in (getattr(error, "description", None) or "").lower()


def _key_accepted(error: MaskinportenError) -> bool:
    """Whether Maskinporten refused the probe only after authenticating it: the key itself was accepted.

    It checks the key and signature first; a refusal of the scope, the customer or the system user comes after.
    """
    return isinstance(error, (InvalidScopeError, AccessDeniedError, AuthorizationDetailsError))


def probe_key(
    environment: Environment, client_id: str, scopes: Sequence[str], signer: Signer
) -> TokenRequestError | None:
    """Ask Maskinporten for a token signed by ``signer``: None when it accepted the key, else its refusal.

    One grant straight to the token endpoint: no cached token or remembered refusal answers for the key, and a
    refusal (expected while a new kid propagates) is returned, not logged. A refusal of the scope or the customer
    counts as accepted: Maskinporten checks the key before them.
    """
    from .endpoints import TokenEndpoint
    from .grant import GrantBuilder, GrantClaims, SigningKeys

    endpoint = TokenEndpoint(environment)
    try:
        endpoint.obtain(GrantBuilder(SigningKeys(signer), GrantClaims(environment.issuer, client_id, scopes)))
    except TokenRequestError as exc:
        return None if _key_accepted(exc) else exc
    finally:
        endpoint.close()
    return None


async def aprobe_key(
    environment: Environment, client_id: str, scopes: Sequence[str], signer: Signer
) -> TokenRequestError | None:
    """:func:`probe_key` without blocking the event loop."""
    import asyncio

    return await asyncio.to_thread(probe_key, environment, client_id, scopes, signer)


def _public_jwk(source: Signer | Mapping[str, Any]) -> dict[str, Any]:
    """The JWK to register: a signer's public key with its kid and algorithm, or a given public JWK."""
    jwk = source.public_jwk() if isinstance(source, Signer) else dict(source)
    for private in ("d", "p", "q", "dp", "dq", "qi"):
        if private in jwk:
            raise ConfigurationError("jwk", "holds private key material; give the public key only")
    if not jwk.get("kid"):
        raise ConfigurationError("kid", "the new key needs a kid to be registered by")
    jwk.setdefault("alg", "RS256")
    jwk.setdefault("use", "sig")
    return jwk


def _posted(keys: Iterable[RegisteredKey]) -> dict[str, Any]:
    """The body that keeps ``keys`` as they are (with their expiry: posting a key without one renews it)."""
    return {"keys": [key.jwk for key in keys]}


def _prune_candidates(keys: Iterable[RegisteredKey], keep: Iterable[str | None]) -> list[str]:
    """Keys that may go, soonest to expire first; never one in ``keep``."""
    far = datetime.datetime.max.replace(tzinfo=datetime.timezone.utc)
    kept = set(keep)
    return [key.kid for key in sorted(keys, key=lambda key: key.expires_at or far) if key.kid not in kept]


class SelfService:
    """A client of Digdir's self-service API for one environment.

    Args:
        admin_auth: a :class:`~maskinporten_auth.MaskinportenAuth` with ``idporten:dcr.read`` (and
            ``idporten:dcr.write`` to change keys); None allows only the public scope catalogue.
        environment: ``"test"``, ``"prod"``, or the base URL before the prefix (the emulator's
            ``.selfservice_url``).
        prefix: the API's path prefix, ``/api/v1`` by default.
        scope_snapshot: catalogue entries to use instead of asking the API (offline, for tests).
        catalogue_ttl: seconds the scope catalogue is kept before it is read again.
        timeout: seconds for each HTTP request.
        http_client: the ``httpx.Client`` to use (proxies, a custom CA); by default one of its own.
        async_http_client: the ``httpx.AsyncClient`` for the async forms.
    """

    def __init__(
        self,
        admin_auth: MaskinportenAuth | None,
        environment: str = "test",
        *,
        prefix: str = DEFAULT_PREFIX,
        scope_snapshot: Iterable[Mapping[str, Any]] | None = None,
        catalogue_ttl: float = DEFAULT_CATALOGUE_TTL,
        timeout: float = 30.0,
        http_client: httpx.Client | None = None,
        async_http_client: httpx.AsyncClient | None = None,
    ) -> None:
        from .auth import MaskinportenAuth

        if admin_auth is not None and not isinstance(admin_auth, MaskinportenAuth):
            raise ConfigurationError("admin_auth", f"must be a MaskinportenAuth, got {type(admin_auth).__name__}")
        if not isinstance(environment, str) or not environment:
            raise ConfigurationError("environment", "must be 'test', 'prod' or the API's base URL")
        base_url = ENVIRONMENTS.get(environment, environment).rstrip("/")
        if not base_url.startswith(("https://", "http://")):
            raise ConfigurationError("environment", f"must be 'test', 'prod' or an http(s) URL, got {environment!r}")
        if not prefix.startswith("/"):
            raise ConfigurationError("prefix", f"must start with '/', got {prefix!r}")
        self.admin_auth = admin_auth
        self.base_url = base_url
        self.prefix = prefix.rstrip("/")
        self.catalogue_ttl = validate_seconds(catalogue_ttl, "catalogue_ttl")
        self._timeout = timeout
        self._http_client = http_client
        self._async_http_client = async_http_client
        self._own_clients: list[httpx.Client | httpx.AsyncClient] = []
        self._catalogue: dict[str, ScopeInfo] | None = None
        self._catalogue_read_at = 0.0
        self._offline = scope_snapshot is not None
        if scope_snapshot is not None:
            self._catalogue = self._index(scope_snapshot)

    def __repr__(self) -> str:
        return f"SelfService(base_url={self.base_url!r}, prefix={self.prefix!r})"

    # Keys

    def keys(self, client_id: str, *, signer: Signer | None = None) -> list[RegisteredKey]:
        """The keys registered on ``client_id``; with ``signer``, the one it signs with is marked ``signing``."""
        return self._run(self._keys_flow(client_id, signer))

    async def akeys(self, client_id: str, *, signer: Signer | None = None) -> list[RegisteredKey]:
        """:meth:`keys` without blocking the event loop."""
        return await self._arun(self._keys_flow(client_id, signer))

    def add_key(self, client_id: str, signer_or_jwk: Signer | Mapping[str, Any]) -> RegisteredKey:
        """Add a public key to the client's set, keeping every key there; a key already registered is a no-op.

        Raises :class:`KeyLimitError` (naming keys to prune) when the client already has :data:`MAX_KEYS` keys.
        """
        return self._run(self._add_flow(client_id, signer_or_jwk))

    async def aadd_key(self, client_id: str, signer_or_jwk: Signer | Mapping[str, Any]) -> RegisteredKey:
        """:meth:`add_key` without blocking the event loop."""
        return await self._arun(self._add_flow(client_id, signer_or_jwk))

    def renew_key(self, client_id: str, kid: str) -> RegisteredKey:
        """Re-post the key ``kid`` without an expiry of its own: it then lives a year from now."""
        return self._run(self._renew_flow(client_id, kid))

    async def arenew_key(self, client_id: str, kid: str) -> RegisteredKey:
        """:meth:`renew_key` without blocking the event loop."""
        return await self._arun(self._renew_flow(client_id, kid))

    def remove_key(self, client_id: str, kid: str) -> bool:
        """Remove the key ``kid``, keeping the others; False when it was not there."""
        return bool(self._run(self._remove_flow(client_id, kid)))

    async def aremove_key(self, client_id: str, kid: str) -> bool:
        """:meth:`remove_key` without blocking the event loop."""
        return bool(await self._arun(self._remove_flow(client_id, kid)))

    def rotate(
        self,
        client_id: str,
        new_signer: Signer,
        *,
        auth: MaskinportenAuth | None = None,
        remove_after: float | datetime.timedelta | None = None,
        dry_run: bool = False,
        old_kid: str | None = None,
        propagation_timeout: float = DEFAULT_PROPAGATION_TIMEOUT,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        progress: Callable[[RotationProgress], None] | None = None,
    ) -> RotationResult:
        """Rotate to ``new_signer``'s key without an outage; safe to run again after a crash at any step.

        In order: read the set; add the new public key to it (never replacing; :class:`KeyLimitError` when it would
        exceed :data:`MAX_KEYS`); probe with grants signed by the new key until Maskinporten accepts its kid,
        retrying "Unknown key identifier" for up to ``propagation_timeout`` seconds; only then switch ``auth`` to
        the new signer (``auth.replace_signer``); and, when ``remove_after`` is given, remove the old key that long
        after the new one was first accepted. If the new key is not accepted, the key this run added is removed
        again and :class:`RotationError` raised: signing never moves to a key Maskinporten refuses.

        Args:
            client_id: the client whose keys rotate.
            new_signer: the new key (any backend; only its public JWK is registered). It needs a kid.
            auth: the application's auth to switch; its scopes are used for the probe grants.
            remove_after: seconds (or a timedelta) after acceptance to remove the old key; None keeps it.
            dry_run: only read the set and return the plan, changing nothing.
            old_kid: the key to remove; by default the kid ``auth`` signed with before the switch.
            propagation_timeout: how long to retry an unknown kid (Maskinporten: 0-2 minutes).
            poll_interval: seconds between probe grants.
            progress: called with each :class:`RotationProgress` (also logged at INFO).
        """
        flow = self._rotate_flow(
            client_id, new_signer, auth, remove_after, dry_run, old_kid, propagation_timeout, poll_interval, progress
        )
        return self._run(flow)

    async def arotate(
        self,
        client_id: str,
        new_signer: Signer,
        *,
        auth: MaskinportenAuth | None = None,
        remove_after: float | datetime.timedelta | None = None,
        dry_run: bool = False,
        old_kid: str | None = None,
        propagation_timeout: float = DEFAULT_PROPAGATION_TIMEOUT,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        progress: Callable[[RotationProgress], None] | None = None,
    ) -> RotationResult:
        """:meth:`rotate` without blocking the event loop."""
        flow = self._rotate_flow(
            client_id, new_signer, auth, remove_after, dry_run, old_kid, propagation_timeout, poll_interval, progress
        )
        return await self._arun(flow)

    # The scope catalogue

    def scope(self, name: str) -> ScopeInfo:
        """The catalogue entry of scope ``name``; raises SelfServiceError when the catalogue has none."""
        return self._find_scope(self._run(self._catalogue_flow()), name)

    async def ascope(self, name: str) -> ScopeInfo:
        """:meth:`scope` without blocking the event loop."""
        return self._find_scope(await self._arun(self._catalogue_flow()), name)

    def scopes(self) -> list[ScopeInfo]:
        """The whole catalogue (cached for ``catalogue_ttl`` seconds)."""
        return list(self._run(self._catalogue_flow()).values())

    # Closing

    def close(self) -> None:
        """Close the HTTP client this object opened (not one given to it); a later call opens a new one."""
        if self._http_client is not None and self._http_client in self._own_clients:
            self._own_clients.remove(self._http_client)
            self._http_client.close()
            self._http_client = None

    async def aclose(self) -> None:
        """Close every HTTP client this object opened."""
        self.close()
        if self._async_http_client is not None and self._async_http_client in self._own_clients:
            self._own_clients.remove(self._async_http_client)
            await self._async_http_client.aclose()
            self._async_http_client = None

    def __enter__(self) -> SelfService:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> SelfService:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # Flows: each yields the steps it needs and returns its result

    def _jwks_path(self, client_id: str) -> str:
        if not isinstance(client_id, str) or not client_id or "/" in client_id:
            raise ConfigurationError("client_id", f"must be a client id, got {client_id!r}")
        return f"/clients/{client_id}/jwks"

    def _read_flow(self, client_id: str, signing_kid: str | None = None) -> _Flow[list[RegisteredKey]]:
        document = yield _Http("GET", self._jwks_path(client_id))
        entries = document.get("keys", []) if isinstance(document, dict) else []
        return [RegisteredKey.from_jwk(entry, signing_kid=signing_kid) for entry in entries]

    def _write_flow(self, client_id: str, keys: list[RegisteredKey]) -> _Flow[None]:
        """Replace the whole set with ``keys`` (DELETE when none is left: the API's way to remove the last)."""
        if keys:
            yield _Http("POST", self._jwks_path(client_id), _posted(keys))
        else:
            yield _Http("DELETE", self._jwks_path(client_id))

    def _keys_flow(self, client_id: str, signer: Signer | None) -> _Flow[list[RegisteredKey]]:
        return (yield from self._read_flow(client_id, signer.kid if signer is not None else None))

    def _add_flow(self, client_id: str, signer_or_jwk: Signer | Mapping[str, Any]) -> _Flow[RegisteredKey]:
        jwk = yield _PublicJwk(signer_or_jwk)
        keys = yield from self._read_flow(client_id)
        found = self._existing(keys, jwk)
        if found is not None:
            return found
        if len(keys) >= MAX_KEYS:
            raise KeyLimitError(
                f"client {client_id} already has {len(keys)} keys, the most it can hold",
                prune=_prune_candidates(keys, ()),
            )
        yield from self._write_flow(client_id, [*keys, RegisteredKey.from_jwk(jwk)])
        written = yield from self._read_flow(client_id)
        return next(key for key in written if key.kid == jwk["kid"])

    @staticmethod
    def _existing(keys: list[RegisteredKey], jwk: Mapping[str, Any]) -> RegisteredKey | None:
        """The registered key with ``jwk``'s kid, if it is the same key; SelfServiceError if it is another."""
        found = next((key for key in keys if key.kid == jwk["kid"]), None)
        if found is not None and not found.same_key(jwk):
            raise SelfServiceError(
                f"the kid {jwk['kid']!r} is registered for another key",
                hint="give the new key a kid of its own",
            )
        return found

    def _renew_flow(self, client_id: str, kid: str) -> _Flow[RegisteredKey]:
        keys = yield from self._read_flow(client_id)
        if not any(key.kid == kid for key in keys):
            raise SelfServiceError(f"client {client_id} has no key {kid!r}", hint="list them: maskinporten keys list")
        renewed = [
            RegisteredKey.from_jwk({name: value for name, value in key.jwk.items() if name != "exp"})
            if key.kid == kid
            else key
            for key in keys
        ]
        yield from self._write_flow(client_id, renewed)
        written = yield from self._read_flow(client_id)
        return next(key for key in written if key.kid == kid)

    def _remove_flow(self, client_id: str, kid: str) -> _Flow[bool]:
        keys = yield from self._read_flow(client_id)
        if not any(key.kid == kid for key in keys):
            return False
        yield from self._write_flow(client_id, [key for key in keys if key.kid != kid])
        return True

    def _probe_scopes(self, client_id: str, auth: MaskinportenAuth | None) -> _Flow[tuple[str, ...]]:
        """The scopes of the probe grants: the application's, else the first one registered on the client."""
        if auth is not None:
            return auth.scopes
        client = yield _Http("GET", f"/clients/{client_id}")
        scopes = client.get("scopes") if isinstance(client, dict) else None
        # A scope the client lacks still proves the key: Maskinporten checks the key before the scopes.
        return (str(scopes[0]),) if scopes else (ADMIN_SCOPES[0],)

    def _rotate_flow(
        self,
        client_id: str,
        new_signer: Signer,
        auth: MaskinportenAuth | None,
        remove_after: float | datetime.timedelta | None,
        dry_run: bool,
        old_kid: str | None,
        propagation_timeout: float,
        poll_interval: float,
        progress: Callable[[RotationProgress], None] | None,
    ) -> _Flow[RotationResult]:
        if not isinstance(new_signer, Signer):
            raise ConfigurationError(
                "new_signer", f"must be a maskinporten_auth Signer, got {type(new_signer).__name__}"
            )
        grace = remove_after.total_seconds() if isinstance(remove_after, datetime.timedelta) else remove_after
        if grace is not None:
            grace = validate_seconds(grace, "remove_after")
        if auth is not None and auth.client_id != client_id:
            raise ConfigurationError("auth", f"signs for client {auth.client_id}, not {client_id}")
        validate_seconds(propagation_timeout, "propagation_timeout")
        validate_seconds(poll_interval, "poll_interval", minimum=0.001)
        jwk = yield _PublicJwk(new_signer)
        new_kid = str(jwk["kid"])
        if old_kid is None and auth is not None and auth.signer.kid != new_kid:
            old_kid = auth.signer.kid

        def report(step: str, message: str, attempt: int = 0) -> None:
            logger.info("rotation of %s: %s", client_id, message)
            if progress is not None:
                progress(RotationProgress(step, message, attempt))

        before = yield from self._read_flow(client_id)
        present = self._existing(before, jwk) is not None
        if not present and len(before) >= MAX_KEYS:
            raise KeyLimitError(
                f"client {client_id} has {len(before)} keys; adding {new_kid} would exceed {MAX_KEYS}",
                prune=_prune_candidates(before, (old_kid,)),
            )
        remove = old_kid if grace is not None and old_kid is not None and old_kid != new_kid else None
        plan = (
            f"read the {len(before)} key(s) of client {client_id}: {', '.join(key.kid for key in before) or 'none'}",
            f"{new_kid} is already registered: keep it" if present else f"add {new_kid}, keeping every key there",
            f"probe with grants signed by {new_kid} until Maskinporten accepts it (up to {propagation_timeout:.0f} s)",
            "switch the application's signer to it" if auth is not None else "nothing to switch (no auth given)",
            f"remove {remove} {grace:.0f} s after {new_kid} is accepted" if remove else "keep the old key",
        )
        result = RotationResult(client_id=client_id, new_kid=new_kid, old_kid=old_kid, plan=plan, dry_run=dry_run)
        if dry_run:
            return result
        report("read", plan[0])
        if not present:
            yield from self._write_flow(client_id, [*before, RegisteredKey.from_jwk(jwk)])
        result = dataclasses.replace(result, added=not present)
        report("add", plan[1])
        scopes = yield from self._probe_scopes(client_id, auth)
        started = time.monotonic()
        attempts = 0
        while True:
            attempts += 1
            refused = yield _Probe(client_id, tuple(scopes), new_signer)
            if refused is None:
                break
            waited = time.monotonic() - started
            if _unknown_kid(refused) and waited + poll_interval <= propagation_timeout:
                report("wait", f"Maskinporten does not know {new_kid} yet ({waited:.0f} s); retrying", attempts)
                yield _Sleep(poll_interval)
                continue
            result = dataclasses.replace(result, attempts=attempts)
            if result.added:  # only what this run added: a key that was there before may be in use
                yield from self._remove_flow(client_id, new_kid)
                result = dataclasses.replace(result, rolled_back=True)
                report("rollback", f"removed {new_kid} again")
            raise RotationError(
                f"Maskinporten did not accept the new key {new_kid} of client {client_id}", result=result, cause=refused
            )
        accepted = time.monotonic()
        result = dataclasses.replace(
            result, attempts=attempts, accepted_at=datetime.datetime.now(datetime.timezone.utc)
        )
        report("verified", f"Maskinporten accepts {new_kid} (after {attempts} probe(s))", attempts)
        if auth is not None:
            auth.replace_signer(new_signer)
            result = dataclasses.replace(result, switched=True)
            report("switch", f"the application signs with {new_kid}")
        if remove is not None:
            wait = (grace or 0.0) - (time.monotonic() - accepted)
            if wait > 0:
                yield _Sleep(wait)
            removed = yield from self._remove_flow(client_id, remove)
            result = dataclasses.replace(result, removed=(remove,) if removed else ())
            report("remove", f"removed {remove}" if removed else f"{remove} was already gone")
        return result

    def _catalogue_flow(self) -> _Flow[dict[str, ScopeInfo]]:
        fresh = time.monotonic() - self._catalogue_read_at < self.catalogue_ttl
        if self._catalogue is not None and (self._offline or fresh):
            return self._catalogue
        entries = yield _Http("GET", "/scopes/all", admin=False)
        self._catalogue = self._index(entries if isinstance(entries, list) else [])
        self._catalogue_read_at = time.monotonic()
        return self._catalogue

    @staticmethod
    def _index(entries: Iterable[Mapping[str, Any]]) -> dict[str, ScopeInfo]:
        scopes = (ScopeInfo.from_entry(entry) for entry in entries if isinstance(entry, Mapping))
        return {scope.name: scope for scope in scopes}

    @staticmethod
    def _find_scope(catalogue: Mapping[str, ScopeInfo], name: str) -> ScopeInfo:
        found = catalogue.get(name)
        if found is None:
            raise SelfServiceError(
                f"the scope {name!r} is not in Digdir's scope catalogue",
                hint="check the spelling; a scope not in the catalogue cannot be registered or granted",
            )
        return found

    # Drivers

    def _run(self, flow: _Flow[T]) -> T:
        """Carry out ``flow`` with blocking calls and return its result."""
        outcome: Any = None
        failure: MaskinportenError | None = None
        while True:
            try:
                step = flow.throw(failure) if failure is not None else flow.send(outcome)
            except StopIteration as stop:
                return cast(T, stop.value)
            outcome, failure = None, None
            try:
                outcome = self._execute(step)
            except MaskinportenError as exc:
                failure = exc

    async def _arun(self, flow: _Flow[T]) -> T:
        """Carry out ``flow`` without blocking the event loop and return its result."""
        outcome: Any = None
        failure: MaskinportenError | None = None
        while True:
            try:
                step = flow.throw(failure) if failure is not None else flow.send(outcome)
            except StopIteration as stop:
                return cast(T, stop.value)
            outcome, failure = None, None
            try:
                outcome = await self._aexecute(step)
            except MaskinportenError as exc:
                failure = exc

    def _execute(self, step: _Step) -> Any:
        if isinstance(step, _PublicJwk):
            return _public_jwk(step.source)
        if isinstance(step, _Sleep):
            time.sleep(step.seconds)
            return None
        if isinstance(step, _Probe):
            return probe_key(self._admin().environment, step.client_id, step.scopes, step.signer)
        headers = {"Authorization": f"Bearer {self._admin().get_token()}"} if step.admin else {}
        client = self._http_client or self._own(httpx.Client(timeout=self._timeout))
        try:
            response = client.request(step.method, self._url(step.path), json=step.body, headers=headers)
        except httpx.HTTPError as exc:
            raise self._unreachable(step, exc) from exc
        return self._decode(step, response)

    async def _aexecute(self, step: _Step) -> Any:
        import asyncio

        if isinstance(step, _PublicJwk):
            return await asyncio.to_thread(_public_jwk, step.source)
        if isinstance(step, _Sleep):
            await asyncio.sleep(step.seconds)
            return None
        if isinstance(step, _Probe):
            return await aprobe_key(self._admin().environment, step.client_id, step.scopes, step.signer)
        headers = {"Authorization": f"Bearer {await self._admin().aget_token()}"} if step.admin else {}
        client = self._async_http_client or self._own(httpx.AsyncClient(timeout=self._timeout))
        try:
            response = await client.request(step.method, self._url(step.path), json=step.body, headers=headers)
        except httpx.HTTPError as exc:
            raise self._unreachable(step, exc) from exc
        return self._decode(step, response)

    def _own(self, client: Any) -> Any:
        """Keep ``client`` as this object's own for its kind (sync or async), and return it."""
        if isinstance(client, httpx.Client):
            self._http_client = client
        else:
            self._async_http_client = client
        self._own_clients.append(client)
        return client

    def _admin(self) -> MaskinportenAuth:
        if self.admin_auth is None:
            raise ConfigurationError("admin_auth", "is needed for the keys (a MaskinportenAuth with idporten:dcr.*)")
        return self.admin_auth

    def _url(self, path: str) -> str:
        return f"{self.base_url}{self.prefix}{path}"

    def _unreachable(self, step: _Http, error: httpx.HTTPError) -> SelfServiceError:
        return SelfServiceError(
            f"cannot reach the self-service API ({step.method} {self.prefix}{step.path}): {type(error).__name__}",
            hint="check the network and the base URL (MASKINPORTEN_SELFSERVICE_URL)",
            retryable=True,
        )

    def _decode(self, step: _Http, response: httpx.Response) -> Any:
        """The JSON answer, or SelfServiceError carrying the API's own message."""
        if response.is_success:
            try:
                return response.json() if response.content else None
            except (ValueError, RecursionError):
                raise SelfServiceError(
                    f"{step.method} {self.prefix}{step.path} answered with something that is not JSON",
                    status=response.status_code,
                ) from None
        raise SelfServiceError(
            f"{step.method} {self.prefix}{step.path} failed",
            status=response.status_code,
            description=_message(response),
            hint=_HINTS.get(response.status_code),
            retryable=response.status_code >= 500 or response.status_code == 429,
        )


_HINTS: Final = {
    401: "the admin token was not accepted: the admin integration needs the scopes idporten:dcr.read/write",
    403: "the admin integration may not manage this client, or lacks idporten:dcr.write for a change",
    404: "no such client in this environment: check the client id and the environment",
}


def _message(response: httpx.Response) -> str:
    """The API's own words about a failure, quoted: the admin token and anything else token-like blanked out.

    They are a JSON body's ``error_description``, ``message``, ``detail`` or ``error``, else the body's text.
    """
    try:
        body = response.json()
    except (ValueError, RecursionError):  # RecursionError: JSON nested deeper than the interpreter's stack
        body = None
    fields = body if isinstance(body, dict) else {}
    names = ("error_description", "message", "detail", "error")
    text = next((fields[name] for name in names if isinstance(fields.get(name), str)), response.text)
    return quoted(text, secret=response.request.headers.get("authorization", "").removeprefix("Bearer "))


def key_expiry(signer: Signer, *, api: SelfService | None = None, client_id: str | None = None) -> KeyExpiry | None:
    """When the key ``signer`` signs with expires, or None when that is not known.

    An enterprise certificate's notAfter needs no admin scopes; a registered key's expiry needs ``api`` and
    ``client_id``.
    """
    chain = signer.certificate_chain
    if chain is not None:
        return KeyExpiry(kid=signer.kid or "x5c", expires_at=chain.expires(), source="certificate", signing=True)
    if api is None or client_id is None or signer.kid is None:
        return None
    found = next((key for key in api.keys(client_id) if key.kid == signer.kid), None)
    if found is None or found.expires_at is None:
        return None
    return KeyExpiry(kid=found.kid, expires_at=found.expires_at, source="key", client_id=client_id, signing=True)


class ExpiryWatch:
    """Watches when keys expire: an event for each, and a WARNING 30, 7 and 1 days before (once per threshold).

    Call :meth:`check` from a scheduler (daily is enough). With ``api`` and ``client_id`` every key registered on
    the client is watched; otherwise only ``signer``'s enterprise certificate (no admin scopes needed).

    Args:
        signer: the key this process signs with (its events have ``signing=True``).
        api: a :class:`SelfService` with ``idporten:dcr.read``.
        client_id: the client whose keys to watch.
        on_event: called with each :class:`KeyExpiry` (e.g. ``maskinporten_auth_otel.KeyExpiryGauge``).
        warnings: the thresholds in days.
    """

    def __init__(
        self,
        signer: Signer | None = None,
        *,
        api: SelfService | None = None,
        client_id: str | None = None,
        on_event: Callable[[KeyExpiry], None] | None = None,
        warnings: Sequence[int] = EXPIRY_WARNINGS,
    ) -> None:
        if (api is None) != (client_id is None):
            raise ConfigurationError("client_id" if api is not None else "api", "give api and client_id together")
        if signer is None and api is None:
            raise ConfigurationError("signer", "give a signer, or api and client_id, to watch")
        if on_event is not None and not callable(on_event):
            raise ConfigurationError("on_event", "must be callable")
        self.signer = signer
        self.api = api
        self.client_id = client_id
        self.on_event = on_event
        self.warnings = tuple(sorted(warnings, reverse=True))
        self._warned: dict[str, int] = {}

    def check(self, now: datetime.datetime | None = None) -> list[KeyExpiry]:
        """Read the expiries, send an event for each, warn at a threshold newly crossed; return the events."""
        if self.api is not None and self.client_id is not None:
            keys = self.api.keys(self.client_id, signer=self.signer)
            expiries = [
                KeyExpiry(key.kid, key.expires_at, "key", self.client_id, key.signing)
                for key in keys
                if key.expires_at is not None
            ]
        else:
            expiries = []
        certificate = key_expiry(self.signer) if self.signer is not None else None
        if certificate is not None:
            expiries.append(certificate)
        return [self._report(expiry, now or datetime.datetime.now(datetime.timezone.utc)) for expiry in expiries]

    def _report(self, expiry: KeyExpiry, now: datetime.datetime) -> KeyExpiry:
        days = expiry.days_left(now)
        crossed = min((threshold for threshold in self.warnings if days <= threshold), default=None)
        identity = f"{expiry.source}:{expiry.client_id}:{expiry.kid}"
        if crossed is not None and self._warned.get(identity) != crossed:
            self._warned[identity] = crossed
            expiry = dataclasses.replace(expiry, warning=crossed)
            what = "enterprise certificate" if expiry.source == "certificate" else f"key {expiry.kid}"
            whose = f" of client {expiry.client_id}" if expiry.client_id else ""
            action = (
                "renew the certificate and replace the PKCS#12 file"
                if expiry.source == "certificate"
                else f"renew it (maskinporten keys renew {expiry.kid}) or rotate (maskinporten keys rotate)"
            )
            state = "has expired" if days <= 0 else f"expires in {days:.1f} days"
            logger.warning("The %s%s %s (%s): %s", what, whose, state, f"{expiry.expires_at:%Y-%m-%d}", action)
        if self.on_event is not None:
            self.on_event(expiry)
        return expiry


class SignerReloader:
    """Switches ``auth`` to the key a mounted file holds whenever the file changes, without a restart.

    This is what a Kubernetes secret update (or a new key URI in a mounted file) needs: every ``interval`` seconds
    (or on each :meth:`check`), the files in ``watch`` are read; when their content changed, ``load()`` builds the
    new signer, a probe grant asks Maskinporten whether it knows the new key, and only then
    ``auth.replace_signer`` switches every view of the family to it. A key Maskinporten does not accept yet (its
    kid still propagating) leaves the old signer in place and is tried again at the next check. Cached tokens stay.

    Args:
        auth: the application's auth.
        load: builds the signer from the files as they are now, e.g. ``lambda: signer_from_uri(uri, kid=...)``.
        watch: the files whose content marks a change (the key file, a file holding the kid or the key URI).
        interval: seconds between checks in the background thread that :meth:`start` runs.
        verify: probe with the new key before switching (True); False switches as soon as the files change.
    """

    def __init__(
        self,
        auth: MaskinportenAuth,
        load: Callable[[], Signer],
        *,
        watch: Sequence[str | os.PathLike[str]],
        interval: float = 10.0,
        verify: bool = True,
    ) -> None:
        if not callable(load):
            raise ConfigurationError("load", "must be a callable that returns a Signer")
        if not watch:
            raise ConfigurationError("watch", "name at least one file to watch")
        self.auth = auth
        self.load = load
        self.watch = [Path(path) for path in watch]
        self.interval = validate_seconds(interval, "interval", minimum=0.001)
        self.verify = verify
        self._seen = self._fingerprint()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _fingerprint(self) -> str:
        digest = hashlib.sha256()
        for path in self.watch:
            try:
                digest.update(path.read_bytes())
            except OSError:
                digest.update(b"\0missing")  # a secret being swapped may be absent for a moment
        return digest.hexdigest()

    def check(self) -> bool:
        """Look at the files once; switch to their key if it changed and Maskinporten accepts it. True if switched."""
        with self._lock:
            fingerprint = self._fingerprint()
            if fingerprint == self._seen:
                return False
            try:
                signer = self.load()
            except MaskinportenError as exc:
                logger.warning("the changed key files %s do not load yet: %s", self._names(), exc)
                return False
            current = self.auth.signer
            if signer.kid == current.kid and signer.public_jwk().get("n") == current.public_jwk().get("n"):
                self._seen = fingerprint
                return False
            if self.verify:
                refused = probe_key(self.auth.environment, self.auth.client_id, self.auth.scopes, signer)
                if refused is not None:
                    logger.warning(
                        "Maskinporten does not accept the new key %s from %s yet; still signing with %s: %s",
                        signer.kid,
                        self._names(),
                        current.kid,
                        refused.description or refused,
                    )
                    return False
            self.auth.replace_signer(signer)
            self._seen = fingerprint
            logger.info("switched signing from %s to %s (from %s)", current.kid, signer.kid, self._names())
            return True

    def _names(self) -> str:
        return ", ".join(str(path) for path in self.watch)

    def start(self) -> SignerReloader:
        """Check every ``interval`` seconds in a daemon thread until :meth:`stop`; return self."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="maskinporten-signer-reloader", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check()
            except MaskinportenError as exc:  # Maskinporten unreachable, say: the next check tries again
                logger.warning("checking the key files %s failed: %s", self._names(), exc)

    def stop(self) -> None:
        """Stop the background checks and wait for the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> SignerReloader:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
