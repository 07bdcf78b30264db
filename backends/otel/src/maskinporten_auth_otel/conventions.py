"""The names, units and attributes of the spans and metrics, after OpenTelemetry's semantic conventions.

Metric names are dotted and namespaced (``maskinporten.``), without a ``_total`` suffix or a unit in the name; units
are UCUM (``s``, ``{hit}``, ``{token}``). ``error.type`` is the semantic conventions' attribute; the others are
namespaced under ``maskinporten.``. The identity attributes (:data:`IDENTITY_ATTRIBUTES`) are recorded only when
asked for.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "CACHE_HITS",
    "CACHE_TOKENS",
    "CLIENT_ID",
    "CONSUMER_ORG",
    "ERROR_CODE",
    "ERROR_TYPE",
    "FALLBACK",
    "FETCH_DURATION",
    "FETCH_DURATION_BUCKETS",
    "FETCH_FAILURES",
    "HTTP_STATUS",
    "IDENTITY_ATTRIBUTES",
    "KEY_EXPIRY",
    "KEY_KID",
    "KEY_SIGNING",
    "KEY_SOURCE",
    "REFUSALS",
    "SCOPES",
    "SOURCE",
    "SYSTEMUSER_ORG",
    "TOKEN_EXPIRES_IN",
    "span_name",
]

# Metrics

CACHE_HITS: Final = "maskinporten.token.cache.hits"
"""Counter, ``{hit}``: tokens served from the cache, with no fetch."""
FETCH_DURATION: Final = "maskinporten.token.fetch.duration"
"""Histogram, ``s``: how long each fetch took (signing, requests and retries), with ``error.type`` when it failed."""
FETCH_FAILURES: Final = "maskinporten.token.fetch.failures"
"""Counter, ``{failure}``: fetches that failed, by ``error.type`` and MP code."""
REFUSALS: Final = "maskinporten.token.refusals"
"""Counter, ``{refusal}``: calls answered with a refusal remembered from a moment ago, with no request."""
CACHE_TOKENS: Final = "maskinporten.token.cache.count"
"""Observable gauge, ``{token}``: tokens held in the watched caches."""
KEY_EXPIRY: Final = "maskinporten.key.expiry"
"""Observable gauge, ``s``: seconds until a registered key or enterprise certificate expires, by kid."""

FETCH_DURATION_BUCKETS: Final = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""The duration histogram's bucket boundaries, seconds.

A fetch is a signature (under 1 ms with a local key, tens of ms with a key service) and a round trip to Maskinporten
(tens to hundreds of ms); retries after 5xx, 429 or a timeout stretch it to seconds, up to the retry deadline (30 s
by default).
"""

# Attributes

SOURCE: Final = "maskinporten.token.source"
"""``"maskinporten"``, or ``"altinn"`` for an Altinn token exchanged from a Maskinporten token."""
ERROR_TYPE: Final = "error.type"
"""The exception's class name (``DelegationError``, ``NetworkError``)."""
ERROR_CODE: Final = "maskinporten.error.code"
"""Maskinporten's MP code (``MP-251``), when it gave one."""
HTTP_STATUS: Final = "http.response.status_code"
"""The HTTP status of the last answer to a failed fetch (spans only)."""
FALLBACK: Final = "maskinporten.token.fallback"
"""True when a failed early refresh was hidden from callers: they got the still-valid token."""
TOKEN_EXPIRES_IN: Final = "maskinporten.token.expires_in"
"""The new token's lifetime in seconds (spans only)."""

KEY_KID: Final = "maskinporten.key.kid"
"""The kid of a key registered on the integration (``x5c`` for an enterprise certificate without one)."""
KEY_SOURCE: Final = "maskinporten.key.source"
"""``key`` (registered on the integration) or ``certificate`` (an enterprise certificate's notAfter)."""
KEY_SIGNING: Final = "maskinporten.key.signing"
"""True for the key this process signs with."""

CLIENT_ID: Final = "maskinporten.client_id"
"""The integration's client id (with ``record_identities=True`` only)."""
SCOPES: Final = "maskinporten.scopes"
"""The scopes asked for, a list (with ``record_identities=True`` only)."""
CONSUMER_ORG: Final = "maskinporten.consumer_org"
"""The organisation number of the customer acted for through delegation (with ``record_identities=True`` only)."""
SYSTEMUSER_ORG: Final = "maskinporten.systemuser_org"
"""The organisation number of the customer whose system user acts (with ``record_identities=True`` only)."""
IDENTITY_ATTRIBUTES: Final = (CLIENT_ID, SCOPES, CONSUMER_ORG, SYSTEMUSER_ORG)
"""Who asked for which token: the integration, its scopes and the customer. Recorded only with
``record_identities=True``."""

_SPAN_NAMES: Final = {"maskinporten": "fetch maskinporten token", "altinn": "exchange altinn token"}


def span_name(source: str) -> str:
    """The span name of a fetch from ``source``: ``fetch maskinporten token`` or ``exchange altinn token``."""
    return _SPAN_NAMES.get(source) or f"fetch {source} token"
