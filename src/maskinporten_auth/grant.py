"""The JWT grant (RFC 7523) that Maskinporten exchanges for an access token.

A grant is built immediately before it is posted and never reused: each call of :meth:`GrantBuilder.build` makes a
new ``jti``, ``iat`` and ``exp``.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from .errors import ConfigurationError, MaskinportenError, SigningError
from .jwk import b64url
from .orgnr import validate_orgno

if TYPE_CHECKING:
    from .signer import Signer

__all__ = [
    "MAX_GRANT_LIFETIME",
    "GrantBuilder",
    "GrantClaims",
    "SigningKey",
    "SigningKeys",
    "consent_authorization",
    "party_urn",
    "systemuser_authorization",
]

SYSTEMUSER_TYPE: Final = "urn:altinn:systemuser"
CONSENT_TYPE: Final = "urn:altinn:consent"
ORGANIZATION_URN: Final = "urn:altinn:organization:identifier-no:"
PERSON_URN: Final = "urn:altinn:person:identifier-no:"
MAX_GRANT_LIFETIME: Final = 120
DEFAULT_GRANT_LIFETIME: Final = 60
# RFC 6749 section 3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
_SCOPE_TOKEN: Final = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
# Between scopes: whitespace (the OAuth wire format, "a b") or commas, as MASKINPORTEN_SCOPES and --scope take them.
SCOPE_SEPARATORS: Final = re.compile(r"[\s,]+")


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def validate_client_id(value: object, field: str = "client_id") -> str:
    """Return the integration's client id if it is a non-empty string without whitespace or control characters."""
    if not isinstance(value, str) or not value:
        raise ConfigurationError(field, f"must be a non-empty string, got {value!r}")
    if any(ch.isspace() for ch in value) or not value.isprintable():
        raise ConfigurationError(field, f"must not contain whitespace or control characters: {value!r}")
    return value


def validate_scopes(value: object, field: str = "scopes") -> tuple[str, ...]:
    """Return the scopes as a tuple, in order and without duplicates.

    ``value`` is a str or a list of str; each is split on whitespace and commas, so ``"a b"`` (the OAuth wire
    format), ``"a,b"`` and ``["a", "b"]`` all mean the two scopes ``a`` and ``b``, everywhere scopes are given
    (``MaskinportenAuth(scopes=...)``, ``MASKINPORTEN_SCOPES``, ``--scope``). Each scope must be an OAuth scope
    token (RFC 6749 section 3.3): printable ASCII without quotes or backslashes.
    """
    items: Sequence[object]
    if isinstance(value, str):
        items = [value]
    elif isinstance(value, (list, tuple)):
        items = value
    else:
        raise ConfigurationError(field, f"must be a scope string or a list of scopes, got {type(value).__name__}")
    scopes: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ConfigurationError(field, f"must hold strings, got {type(item).__name__} {item!r}")
        scopes += [scope for scope in SCOPE_SEPARATORS.split(item) if scope]
    for scope in scopes:
        if not _SCOPE_TOKEN.fullmatch(scope):
            raise ConfigurationError(
                field, f"{scope!r} is not a valid OAuth scope (printable ASCII without quotes or backslashes)"
            )
    if not scopes:
        raise ConfigurationError(field, f"at least one scope is required, got {value!r}")
    return tuple(dict.fromkeys(scopes))


def validate_resource(value: object, field: str = "resource") -> tuple[str, ...] | None:
    """Return the audience(s) of an audience-restricted token (RFC 8707: absolute URIs) as a tuple, or None."""
    if value is None:
        return None
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not items:
        raise ConfigurationError(field, "must be a resource string or a non-empty list of them")
    for item in items:
        if not isinstance(item, str) or not item.isprintable() or any(ch.isspace() for ch in item):
            raise ConfigurationError(field, f"must be an absolute URI without whitespace, got {item!r}")
        try:
            scheme = urlsplit(item).scheme
        except ValueError:
            scheme = ""
        if not scheme:
            raise ConfigurationError(field, f"must be an absolute URI, got {item!r}")
    return tuple(items)


def validate_pid(value: object, field: str = "pid") -> str | None:
    """Return a national identity number (11 digits), or None."""
    if value is None:
        return None
    if not isinstance(value, str) or len(value) != 11 or not value.isascii() or not value.isdigit():
        raise ConfigurationError(field, "must be an 11-digit national identity number")
    return value


def validate_external_ref(value: object, field: str = "external_ref") -> str:
    """Return a system user request's ``externalRef`` if it is a non-empty printable string."""
    if not isinstance(value, str) or not value or not value.isprintable():
        raise ConfigurationError(field, f"must be a non-empty printable string, got {value!r}")
    return value


def systemuser_authorization(orgno: str, external_ref: str | None = None) -> dict[str, Any]:
    """Return the ``authorization_details`` entry that asks for a token as an Altinn system user (systembruker)."""
    detail: dict[str, Any] = {
        "type": SYSTEMUSER_TYPE,
        "systemuser_org": {"authority": "iso6523-actorid-upis", "ID": f"0192:{validate_orgno(orgno, 'orgno')}"},
    }
    if external_ref is not None:
        detail["externalRef"] = validate_external_ref(external_ref)
    return detail


def party_urn(party: str, field: str = "from_party") -> str:
    """Return the Altinn party URN of ``party``: an organisation number, a national identity number, or a URN.

    ``"310539759"`` becomes ``urn:altinn:organization:identifier-no:310539759`` and an 11-digit identity number
    ``urn:altinn:person:identifier-no:<pid>``; a URN of either kind is checked and returned as it is.
    """
    if not isinstance(party, str) or not party:
        raise ConfigurationError(
            field, f"must be an organisation number, a national identity number or a party URN, got {party!r}"
        )
    if party.startswith(ORGANIZATION_URN):
        validate_orgno(party[len(ORGANIZATION_URN) :], field)
        return party
    if party.startswith(PERSON_URN):
        validate_pid(party[len(PERSON_URN) :], field)
        return party
    if party.startswith("urn:"):
        raise ConfigurationError(field, f"must be a URN starting {ORGANIZATION_URN!r} or {PERSON_URN!r}, got {party!r}")
    if len(party) == 11:
        validate_pid(party, field)
        return PERSON_URN + party
    return ORGANIZATION_URN + validate_orgno(party, field)


def consent_authorization(consent_id: str | uuid.UUID, from_party: str) -> dict[str, Any]:
    """Return the ``authorization_details`` entry that asks for a token under an Altinn consent (samtykke).

    ``consent_id`` is the consent request's id (a UUID); ``from_party`` is whoever gave the consent: an
    organisation number, a national identity number, or their party URN (see :func:`party_urn`).
    """
    try:
        consent = consent_id if isinstance(consent_id, uuid.UUID) else uuid.UUID(str(consent_id))
    except ValueError:
        raise ConfigurationError("consent_id", f"must be a UUID, got {consent_id!r}") from None
    return {"type": CONSENT_TYPE, "id": str(consent), "from": party_urn(from_party)}


def validate_authorization_details(value: object, field: str = "authorization_details") -> tuple[Any, ...] | None:
    """Return RFC 9396 authorization details as a tuple of JSON objects, or None."""
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or not value:
        raise ConfigurationError(field, "must be a non-empty list of JSON objects")
    for item in value:
        if not isinstance(item, Mapping) or not isinstance(item.get("type"), str):
            raise ConfigurationError(field, "each entry must be an object with a string 'type'")
        try:
            json.dumps(item)
        except (TypeError, ValueError):
            raise ConfigurationError(field, "entries must be JSON serialisable") from None
    return tuple(json.loads(json.dumps(list(value))))


@dataclass(frozen=True, init=False)
class GrantClaims:
    """What a grant asks for; every field maps to one documented claim.

    This is where the claims' rules live: construction validates each field (``scopes`` split on whitespace and
    commas, a ``resource`` str one audience) and raises :class:`~maskinporten_auth.errors.ConfigurationError` naming it.
    """

    audience: str
    client_id: str
    scopes: tuple[str, ...]
    consumer_org: str | None
    resource: tuple[str, ...] | None
    authorization_details: tuple[Any, ...] | None
    pid: str | None
    lifetime: int
    _static: dict[str, Any] = field(init=False, repr=False, compare=False)

    def __init__(
        self,
        audience: str,
        client_id: str,
        scopes: str | Sequence[str],
        consumer_org: str | None = None,
        resource: str | Sequence[str] | None = None,
        authorization_details: Sequence[Mapping[str, Any]] | None = None,
        pid: str | None = None,
        lifetime: int = DEFAULT_GRANT_LIFETIME,
    ) -> None:
        if isinstance(lifetime, bool) or not isinstance(lifetime, int):
            raise ConfigurationError("grant_lifetime", "must be a whole number of seconds")
        if not 1 <= lifetime <= MAX_GRANT_LIFETIME:
            raise ConfigurationError(
                "grant_lifetime", f"must be between 1 and {MAX_GRANT_LIFETIME} seconds, got {lifetime}"
            )
        values = {
            "audience": audience,
            "client_id": validate_client_id(client_id),
            "scopes": validate_scopes(scopes),
            "consumer_org": None if consumer_org is None else validate_orgno(consumer_org, "consumer_org"),
            "resource": validate_resource(resource),
            "authorization_details": validate_authorization_details(authorization_details),
            "pid": validate_pid(pid),
            "lifetime": lifetime,
        }
        self._set(values)

    def _set(self, values: Mapping[str, Any]) -> None:
        """Set validated fields, check that they fit together, and precompute the claims every grant repeats."""
        for name, value in values.items():
            object.__setattr__(self, name, value)
        if self.consumer_org is not None and self.systemuser_org is not None:
            raise ConfigurationError(
                "consumer_org",
                "a token is either for a customer's delegation (consumer_org) or for a customer's system user "
                "(authorization_details of type urn:altinn:systemuser), not both",
            )
        static: dict[str, Any] = {"aud": self.audience, "iss": self.client_id, "scope": " ".join(self.scopes)}
        if self.consumer_org is not None:
            static["consumer_org"] = self.consumer_org
        if self.resource is not None:
            static["resource"] = list(self.resource)
        if self.authorization_details is not None:
            static["authorization_details"] = list(self.authorization_details)
        if self.pid is not None:
            static["pid"] = self.pid
        object.__setattr__(self, "_static", static)

    @property
    def systemuser_org(self) -> str | None:
        """The organisation number of the Altinn system user's owner asked for, or None."""
        for detail in self.authorization_details or ():
            if detail.get("type") == SYSTEMUSER_TYPE:
                org = detail.get("systemuser_org")
                identifier = org.get("ID") if isinstance(org, dict) else None
                return identifier.rpartition(":")[2] if isinstance(identifier, str) else None
        return None

    def for_customer(self, consumer_org: str | None = None, systemuser: dict[str, Any] | None = None) -> GrantClaims:
        """The same claims for another customer: a delegation (``consumer_org``) or a system user's detail.

        Whatever customer these claims named (a ``consumer_org`` or a system user) is replaced; other
        ``authorization_details`` stay.
        """
        return self._replacing(SYSTEMUSER_TYPE, systemuser, consumer_org=consumer_org)

    def for_consent(self, consent: dict[str, Any]) -> GrantClaims:
        """The same claims under another consent (a ``urn:altinn:consent`` detail), replacing any consent named."""
        return self._replacing(CONSENT_TYPE, consent, consumer_org=self.consumer_org)

    def _replacing(self, kind: str, detail: dict[str, Any] | None, consumer_org: str | None) -> GrantClaims:
        """A copy with another customer and detail of ``kind``; only what changes is validated (views stay cheap)."""
        others = tuple(d for d in self.authorization_details or () if d.get("type") != kind)
        added = validate_authorization_details([detail]) if detail is not None else None
        details = (*others, *(added or ()))
        claims = copy.copy(self)
        claims._set(
            {
                "consumer_org": None if consumer_org is None else validate_orgno(consumer_org, "consumer_org"),
                "authorization_details": details or None,
            }
        )
        return claims

    def at(self, now: float) -> dict[str, Any]:
        """Return the claims of a new grant issued at ``now`` (seconds since the epoch), with a fresh ``jti``."""
        issued_at = int(now)
        return {**self._static, "iat": issued_at, "exp": issued_at + self.lifetime, "jti": str(uuid.uuid4())}


class SigningKey:
    """A signer and the JOSE header its grants carry, encoded once."""

    __slots__ = ("encoded_header", "signer")

    def __init__(self, signer: Signer) -> None:
        self.signer = signer
        self.encoded_header = b64url(_json(signer.jose_header()))

    def sign(self, claims: dict[str, Any]) -> str:
        """Return the grant of ``claims``, signed."""
        signing_input = f"{self.encoded_header}.{b64url(_json(claims))}".encode("ascii")
        with _signing_errors_typed(self.signer):
            signature = self.signer.sign(signing_input)
        return f"{signing_input.decode('ascii')}.{b64url(signature)}"


class SigningKeys:
    """The key an auth family signs with, and while a replacement propagates, the one it replaced.

    Every view of the family holds the same object, so :meth:`replace` switches them all from the next grant on.
    """

    __slots__ = ("current", "previous")

    def __init__(self, signer: Signer) -> None:
        self.current = SigningKey(signer)
        self.previous: SigningKey | None = None

    def replace(self, signer: Signer) -> None:
        """Sign with ``signer`` from now on; keep the key it replaces as :attr:`previous`."""
        self.previous, self.current = self.current, SigningKey(signer)


class GrantBuilder:
    """Builds and signs grants for one set of claims with the keys of an auth family."""

    __slots__ = ("claims", "keys")

    def __init__(self, keys: SigningKeys, claims: GrantClaims) -> None:
        self.keys = keys
        self.claims = claims

    @property
    def signer(self) -> Signer:
        """The signer grants are signed with now."""
        return self.keys.current.signer

    def with_claims(self, claims: GrantClaims) -> GrantBuilder:
        """A builder for other claims with the same keys (a per-customer view costs no copy of them)."""
        return GrantBuilder(self.keys, claims)

    def build(self, now: float, key: SigningKey | None = None) -> str:
        """Return a newly signed grant issued at ``now``, signed with ``key`` (by default the current one)."""
        return (key or self.keys.current).sign(self.claims.at(now))

    @property
    def cache_key(self) -> str:
        """The key of these claims' token in a token store: a digest of everything that makes tokens differ.

        From configuration alone, and not the signing key: a rotated key gets the same tokens, so a rotation
        keeps the cache. A digest rather than the values, so that a shared store never holds an identity number
        (``pid``) in clear.
        """
        claims = self.claims
        parts = [
            claims.audience,
            claims.client_id,
            claims.scopes,
            claims.consumer_org,
            claims.resource,
            claims.authorization_details,
            claims.pid,
        ]
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode("utf-8")).hexdigest()


@contextlib.contextmanager
def _signing_errors_typed(signer: Signer) -> Iterator[None]:
    """Turn an untyped failure of a (third-party) signer into a SigningError; typed errors pass unchanged."""
    try:
        yield
    except MaskinportenError:
        raise
    except Exception as exc:
        backend = getattr(signer, "backend", type(signer).__name__)
        raise SigningError(f"signing failed: {type(exc).__name__}: {exc}", backend=str(backend)) from exc
