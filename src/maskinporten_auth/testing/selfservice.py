"""Digdir's self-service API, emulated (maskinporten-protocol.md §8): keys per client and the scope catalogue.

``GET|POST|PUT|DELETE /api/v1/clients/{client_id}/jwks``, ``GET /api/v1/clients/{client_id}`` and the public
``GET /api/v1/scopes/all`` and ``/api/v1/delegationsources``. Key changes reach the token endpoint after
``propagation_delay`` seconds, as Maskinporten's take 0-2 minutes: until then a grant with a new kid is refused
with "Unknown key identifier", and a removed key still works.
"""

from __future__ import annotations

import bisect
import dataclasses
import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..jwk import public_key_from_jwk, rsa_public_jwk
from ..jws import RSA_ALGORITHMS, CompactJws, MalformedJws
from .registry import ClientKey, Registry
from .server import Answer

__all__ = [
    "ADMIN_READ",
    "ADMIN_WRITE",
    "DEFAULT_SCOPE_CATALOGUE",
    "KEY_LIFETIME",
    "MAX_KEYS",
    "SELFSERVICE_PREFIX",
    "SelfServiceApi",
    "verify_own_token",
]

SELFSERVICE_PREFIX = "/api/v1"
ADMIN_READ = "idporten:dcr.read"
ADMIN_WRITE = "idporten:dcr.write"
#: A key lives at most one year from when it was posted.
KEY_LIFETIME = 365 * 24 * 3600
MAX_KEYS = 5
_KID = re.compile(r"[A-Za-z0-9._-]+")
_CLIENT_PATH = re.compile(rf"{SELFSERVICE_PREFIX}/clients/([^/]+)(/jwks)?/?")


def _scope(name: str, **fields: Any) -> dict[str, Any]:
    prefix, _, subscope = name.partition(":")
    entry: dict[str, Any] = {
        "name": name,
        "prefix": prefix,
        "subscope": subscope,
        "description": "",
        "active": True,
        "allowed_integration_types": ["maskinporten"],
        "owner_orgno": "889640782",
        "token_type": "SELF_CONTAINED",
        "visibility": "PUBLIC",
        "requires_user_consent": False,
        "requires_user_authentication": False,
        "delegation_source": None,
        "at_max_age": 0,
        "authorization_max_lifetime": 0,
        "accessible_for_all": False,
        "supports_european_businesses": False,
    }
    entry.update(fields)
    return entry


#: The catalogue the emulator serves unless given another: NAV's and Altinn's scopes the demo and tests use, and
#: the self-service API's own. Values are illustrative, in the shape Digdir publishes.
DEFAULT_SCOPE_CATALOGUE: tuple[dict[str, Any], ...] = (
    _scope(
        "nav:inntektsmelding/lps.write",
        description="Inntektsmelding fra lønns- og personalsystemer",
        delegation_source="https://tt02.altinn.no/",
        owner_orgno="889640782",
    ),
    _scope(
        "nav:helseytelser/sykepenger",
        description="Sykepengesøknader for lønns- og personalsystemer",
        delegation_source="https://tt02.altinn.no/",
    ),
    _scope("nav:oppfolgingsplan/lps.write", description="Oppfølgingsplaner fra lønns- og personalsystemer"),
    _scope(
        "altinn:serviceowner",
        description="Altinn tjenesteeier",
        at_max_age=3600,
        owner_orgno="991825827",
        allowed_integration_types=["maskinporten", "api_klient"],
    ),
    _scope("nav:retired/api", description="A retired API", active=False),
    _scope(ADMIN_READ, description="Les klienter i selvbetjenings-API-et", owner_orgno="991825827"),
    _scope(ADMIN_WRITE, description="Endre klienter i selvbetjenings-API-et", owner_orgno="991825827"),
)
DELEGATION_SOURCES = ({"name": "altinn", "issuer": "https://tt02.altinn.no/"},)


def _problem(status: int, error: str, description: str) -> Answer:
    return Answer.json(status, {"error": error, "error_description": description})


@dataclasses.dataclass
class _ClientJwks:
    """One client's registered keys as the API shows them, and the sets the token endpoint sees over time."""

    keys: list[dict[str, Any]]
    created: float
    last_updated: float
    # (effective from, keys by kid): each change reaches the token endpoint after the propagation delay
    published: list[tuple[float, dict[str, ClientKey]]]

    def effective(self, now: float) -> dict[str, ClientKey]:
        index = bisect.bisect_right([at for at, _ in self.published], now) - 1
        return self.published[max(index, 0)][1]


def _client_keys(jwks: Iterable[Mapping[str, Any]]) -> dict[str, ClientKey]:
    return {
        str(jwk["kid"]): ClientKey(
            public_key_from_jwk(dict(jwk)),
            None if jwk.get("exp") is None else _datetime(float(jwk["exp"])),
        )
        for jwk in jwks
    }


def _datetime(timestamp: float) -> Any:
    import datetime

    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc)


class SelfServiceApi:
    """The self-service API over the emulator's registry. Not locked itself: the emulator serialises access.

    Args:
        registry: the emulator's clients; keys posted here replace a client's keys there, after the delay.
        verify_admin_token: returns the claims of an access token the emulator issued, or None.
        propagation_delay: seconds before a change of a client's keys reaches the token endpoint.
        scope_catalogue: the entries of ``/api/v1/scopes/all``.
        scope_lifetimes: the emulator's own per-scope token lifetimes (the same mapping, kept up to date): an
            entry's ``at_max_age`` says what the emulator issues.
    """

    def __init__(
        self,
        registry: Registry,
        verify_admin_token: Callable[[str, float], dict[str, Any] | None],
        *,
        propagation_delay: float = 0.0,
        scope_catalogue: Iterable[Mapping[str, Any]] = DEFAULT_SCOPE_CATALOGUE,
        scope_lifetimes: Mapping[str, int] | None = None,
    ) -> None:
        if propagation_delay < 0:
            raise ValueError("propagation_delay must not be negative")
        self._registry = registry
        self._verify_admin_token = verify_admin_token
        self.propagation_delay = propagation_delay
        self.scope_catalogue = [dict(entry) for entry in scope_catalogue]
        self._scope_lifetimes = scope_lifetimes if scope_lifetimes is not None else {}
        self._clients: dict[str, _ClientJwks] = {}
        self._pending: set[str] = set()  # clients with a change the token endpoint does not see yet

    def registered(self, client_id: str, now: float) -> None:
        """Take over the keys ``register_client`` gave ``client_id``, effective at once."""
        client = self._registry.clients[client_id]
        keys = [
            {
                **rsa_public_jwk(key.public_key, kid=kid, alg="RS256"),
                **({"exp": int(key.expires_at.timestamp())} if key.expires_at is not None else {}),
            }
            for kid, key in client.keys.items()
        ]
        self._clients[client_id] = _ClientJwks(keys, now, now, [(now, dict(client.keys))])
        self._pending.discard(client_id)

    def publish(self, now: float) -> None:
        """Give the token endpoint each changed client's keys as they were ``propagation_delay`` seconds ago."""
        for client_id in list(self._pending):
            jwks = self._clients[client_id]
            client = self._registry.clients.get(client_id)
            effective = jwks.effective(now)
            if client is not None and client.keys is not effective:
                self._registry.clients[client_id] = dataclasses.replace(client, keys=effective)
            if jwks.published[-1][0] <= now:
                jwks.published = jwks.published[-1:]
                self._pending.discard(client_id)

    # HTTP

    def answer(self, method: str, path: str, authorization: str | None, body: bytes, now: float) -> Answer:
        """Answer one request under ``/api/v1``."""
        if method == "GET" and path.rstrip("/") == f"{SELFSERVICE_PREFIX}/scopes/all":
            return Answer.json(200, [self._as_issued(entry) for entry in self.scope_catalogue])
        if method == "GET" and path.rstrip("/") == f"{SELFSERVICE_PREFIX}/delegationsources":
            return Answer.json(200, list(DELEGATION_SOURCES))
        match = _CLIENT_PATH.fullmatch(path)
        if match is None:
            return _problem(404, "not_found", f"No resource at {path}.")
        admin = self._authorize(authorization, ADMIN_READ if method == "GET" else ADMIN_WRITE, now)
        if isinstance(admin, Answer):
            return admin
        client_id, jwks_path = match.group(1), match.group(2)
        client = self._registry.clients.get(client_id)
        if client is None:
            return _problem(404, "not_found", f"Client {client_id} not found.")
        if admin.get("consumer", {}).get("ID") != f"0192:{client.orgno}":
            return _problem(403, "access_denied", f"Client {client_id} belongs to another organisation.")
        if not jwks_path:
            if method != "GET":
                return _problem(405, "method_not_allowed", "Only GET is emulated on a client.")
            return Answer.json(
                200,
                {
                    "client_id": client_id,
                    "client_orgno": client.orgno,
                    "integration_type": "maskinporten",
                    "scopes": sorted(client.scopes),
                },
            )
        if client_id not in self._clients:
            self.registered(client_id, now)
        if method == "GET":
            return Answer.json(200, self._document(client_id))
        if method in ("POST", "PUT"):
            return self._replace(client_id, body, now)
        if method == "DELETE":
            return self._delete(client_id, now)
        return _problem(405, "method_not_allowed", f"{method} is not allowed here.")

    def _as_issued(self, entry: dict[str, Any]) -> dict[str, Any]:
        lifetime = self._scope_lifetimes.get(entry.get("name", ""))
        return entry if lifetime is None else {**entry, "at_max_age": lifetime}

    def _authorize(self, authorization: str | None, scope: str, now: float) -> dict[str, Any] | Answer:
        """The claims of the bearer token if it is the emulator's own, unexpired, with ``scope``; else the refusal.

        An admin manages the clients of its own organisation (the token's ``consumer``) only.
        """
        token = (authorization or "").removeprefix("Bearer ").strip()
        claims = self._verify_admin_token(token, now) if token else None
        if claims is None:
            return _problem(401, "invalid_token", "Missing or invalid bearer token.")
        if scope not in str(claims.get("scope", "")).split():
            return _problem(403, "insufficient_scope", f"The token lacks the scope {scope}.")
        return claims

    def _document(self, client_id: str) -> dict[str, Any]:
        jwks = self._clients[client_id]
        return {
            "keys": [dict(key) for key in jwks.keys],
            "created": _iso(jwks.created),
            "last_updated": _iso(jwks.last_updated),
        }

    def _replace(self, client_id: str, body: bytes, now: float) -> Answer:
        """POST/PUT: the set sent replaces the whole set; each key lives a year from now unless it says sooner."""
        try:
            document = json.loads(body)
        except ValueError:
            return _problem(400, "invalid_request", "The body is not JSON.")
        keys = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(keys, list) or not keys:
            return _problem(400, "invalid_request", 'The body must be {"keys": [...]} with at least one key.')
        if len(keys) > MAX_KEYS:
            return _problem(
                400, "invalid_request", f"A client can have at most {MAX_KEYS} keys; {len(keys)} were sent."
            )
        accepted: list[dict[str, Any]] = []
        for key in keys:
            problem = _check_key(key, now)
            if problem is not None:
                return _problem(400, "invalid_request", problem)
            limit = now + KEY_LIFETIME
            exp = key.get("exp")
            accepted.append({**key, "exp": int(min(float(exp), limit)) if exp is not None else int(limit)})
        kids = [key["kid"] for key in accepted]
        if len(set(kids)) != len(kids):
            return _problem(400, "invalid_request", "Each kid must be unique within the client.")
        self._store(client_id, accepted, now)
        return Answer.json(200, self._document(client_id))

    def _delete(self, client_id: str, now: float) -> Answer:
        """DELETE removes the set (the way to remove the last key)."""
        self._store(client_id, [], now)
        return Answer(200)

    def _store(self, client_id: str, keys: list[dict[str, Any]], now: float) -> None:
        jwks = self._clients[client_id]
        jwks.keys, jwks.last_updated = keys, now
        jwks.published.append((now + self.propagation_delay, _client_keys(keys)))
        self._pending.add(client_id)


def _check_key(key: Any, now: float) -> str | None:
    """What is wrong with one posted key, in the API's words, or None."""
    if not isinstance(key, dict):
        return "Each key must be a JSON object."
    missing = [name for name in ("kty", "kid", "alg", "use", "n", "e") if not key.get(name)]
    if missing:
        return f"The key {key.get('kid', '?')!r} lacks {', '.join(missing)} (use is required)."
    if key["kty"] != "RSA":
        return f"kty must be RSA, got {key['kty']!r}."
    if not isinstance(key["kid"], str) or not _KID.fullmatch(key["kid"]):
        return f"kid {key['kid']!r} may hold only A-Z, a-z, 0-9, '.', '_' and '-'."
    if key["alg"] not in RSA_ALGORITHMS:
        return f"alg must be one of {', '.join(RSA_ALGORITHMS)}, got {key['alg']!r}."
    if key["use"] != "sig":
        return f"use must be sig, got {key['use']!r}."
    exp = key.get("exp")
    if exp is not None and (not isinstance(exp, (int, float)) or isinstance(exp, bool) or exp <= now):
        return f"exp of the key {key['kid']!r} must be a time in the future (seconds since the epoch)."
    try:
        size = public_key_from_jwk(key).key_size
    except (ValueError, TypeError):
        return f"The key {key['kid']!r} is not a valid RSA public key."
    if size < 2048:
        return f"The key {key['kid']!r} has {size} bits; at least 2048 are required."
    return None


def _iso(timestamp: float) -> str:
    return str(_datetime(timestamp).isoformat().replace("+00:00", "Z"))


def verify_own_token(token: str, jwks: Mapping[str, Any], issuer: str, now: float) -> dict[str, Any] | None:
    """The claims of ``token`` if it is an unexpired access token from ``issuer`` signed by ``jwks``, else None."""
    try:
        jws = CompactJws.parse(token)
    except MalformedJws:
        return None
    claims = jws.claims
    if not jws.signature_is_valid(public_key_from_jwk(dict(jwks["keys"][0])), "RS256") or claims.get("iss") != issuer:
        return None
    exp = claims.get("exp")
    return claims if isinstance(exp, (int, float)) and not isinstance(exp, bool) and exp > now else None
