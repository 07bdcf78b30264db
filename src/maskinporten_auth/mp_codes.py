"""What Maskinporten's answers mean, by MP code: one table, the one classifier of the token endpoint's refusals.

Each :class:`Explanation` names the exception an answer raises and whether it is a refusal, and holds a one-line
``hint`` (the exception's ``hint``) and a ``checklist`` of causes, each with its fix (what ``maskinporten doctor``
prints under a refused request). :func:`explain` is the one way to find the explanation of an answer: by its MP
code, else by words in its description that Maskinporten sends without a code, else by its OAuth error.
:func:`refusal_error` builds the typed exception of a 4xx answer from it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from .errors import (
    AccessDeniedError,
    AuthorizationDetailsError,
    ClockSkewError,
    DelegationError,
    InvalidGrantError,
    InvalidScopeError,
    SystemUserError,
    TokenRequestError,
)

__all__ = [
    "OWN_ORGNO",
    "SYSTEMUSER_NOT_SET_UP",
    "TABLE",
    "UNKNOWN_KID",
    "Explanation",
    "explain",
    "hint_for",
    "mp_code",
    "refusal_error",
]

#: The OAuth error of an Altinn system user that is not set up as the grant says (MP-303).
SYSTEMUSER_NOT_SET_UP: Final = "invalid_altinn_customer_configuration"
#: The key of "Unknown key identifier (kid) for client", which comes without an MP code.
UNKNOWN_KID: Final = "unknown-kid"
#: The key of a consumer_org that is the supplier's own organisation number, which comes without an MP code.
OWN_ORGNO: Final = "own-orgno"


@dataclass(frozen=True)
class Explanation:
    """What one kind of refusal means and what to do about it.

    Attributes:
        key: the MP code (``"MP-251"``), or a name for a refusal Maskinporten sends without one.
        hint: what to do, in one line.
        checklist: the causes to check, each with its fix.
        refusal: whether the answer will not change within seconds (a customer or scope refused), so that it is
            remembered briefly instead of asked again.
        error: the OAuth error this explanation is limited to, if any.
        words: words of the description (lower case) this explanation is limited to, if any: one must occur.
        kind: the exception the answer raises; None leaves it to the OAuth error (:data:`_KIND_OF_ERROR`).
        names_environment: the hint says which environment the request went to (a client is registered in one).
    """

    key: str
    hint: str
    checklist: tuple[str, ...] = ()
    refusal: bool = False
    error: str | None = None
    words: tuple[str, ...] = ()
    kind: type[TokenRequestError] | None = None
    names_environment: bool = False

    def fits(self, error: str | None, description: str) -> bool:
        """Whether this explanation's limits (OAuth error, words of the description) fit an answer."""
        if self.error is not None and error != self.error:
            return False
        return not self.words or any(word in description for word in self.words)


_MP303_CLIENT_ID = (
    "your system in Altinn's system register must list this integration's client_id (ClientId); add it to the "
    "system's registration"
)
_MP303_EXTERNAL_REF = (
    "the system user request was created with an externalRef: send the same value (with_systemuser(orgno, "
    "external_ref=...))"
)
_MP303_OWNER = (
    "systemuser_org must be the organisation that owns the system user: your customer (not your own organisation "
    "number) and, for an agent system user (klientdelegering), the agent, not one of its clients"
)
_MP303_APPROVED = "the customer has approved the system user request"
_MP100_HINT = "check client_id: the integration must exist in this environment (test and prod are separate)"
_MP200_HINT = (
    "the scope is not registered on the integration; add it in Samarbeidsportalen, or have the customer delegate "
    "it in Altinn and send consumer_org"
)

#: Every explanation, in the order :func:`explain` tries those of one key: the most specific first.
TABLE: Final[tuple[Explanation, ...]] = (
    Explanation(
        "MP-011",
        "the assertion is not a JWT Maskinporten can read (three base64url parts of JSON), or a claim has the wrong "
        "type (resource, for one, must be an array of strings)",
    ),
    Explanation(
        "MP-012",
        "a grant was sent twice; every request must carry a fresh grant with a new jti",
        (
            "The same grant was sent twice (a reused jti). This library signs a new grant for every attempt; if a "
            "proxy or your own code replays requests, stop it from replaying the token request.",
        ),
    ),
    Explanation(
        "MP-100",
        _MP100_HINT,
        (
            "The client id is wrong: compare MASKINPORTEN_CLIENT_ID with the integration id in Samarbeidsportalen.",
            "The integration exists in the other environment: test and prod are separate; check MASKINPORTEN_ENV.",
            "The integration was deleted or deactivated: look it up in Samarbeidsportalen.",
        ),
        names_environment=True,
    ),
    Explanation(
        "MP-110",
        "the grant's aud must be the environment's issuer exactly, with the trailing slash",
        (
            "The grant's aud is not the environment's issuer: use MASKINPORTEN_ENV=test|prod, or the issuer URL "
            "exactly as its metadata gives it, with the trailing slash. The token endpoint URL is not a valid aud.",
        ),
    ),
    Explanation(
        "MP-120",
        "the enterprise certificate (virksomhetssertifikat) is not trusted here; test certificates work only in test "
        "and production certificates only in prod",
        (
            "The enterprise certificate belongs to the other environment: test certificates work only in test, "
            "production certificates only in prod.",
            "The certificate is revoked or not issued by an approved CA (Buypass, Commfides): order a new one.",
            "The chain is incomplete: use the PKCS#12 file as issued, so x5c carries the leaf and its chain.",
        ),
    ),
    Explanation(
        "MP-121",
        "the key or certificate has expired (a registered key lives at most a year from when it was posted): renew "
        "it with `maskinporten keys renew KID`, which posts the same public key again, or rotate to a new one with "
        "`maskinporten keys rotate NEW_KEY`",
        (
            "The key registered on the integration has expired: renew it (`maskinporten keys renew KID` posts the "
            "same public key again and gives it another year), or rotate without downtime to a new key "
            "(`maskinporten keys rotate NEW_KEY`, a key URI or file); see the guide Keys: expiry and rotation.",
            "The enterprise certificate has expired: renew it and replace the PKCS#12 file.",
        ),
    ),
    Explanation(
        "MP-122",
        "the enterprise certificate belongs to another organisation than the integration; sign with your own "
        "organisation's virksomhetssertifikat, or use the integration of the certificate's organisation",
    ),
    Explanation(
        "MP-123",
        "x5c must be a JSON array of base64 DER certificates, leaf first",
        (
            "x5c must be a JSON array of standard-base64 DER certificates, leaf first. Load the certificate with "
            "pkcs12:///path or LocalKeySigner.from_pkcs12_file, which builds it correctly.",
        ),
    ),
    Explanation(
        "MP-124",
        "the signature is empty or does not match the registered key; check that kid names the key that signs",
        (
            "The signing key is not the key registered under this kid: compare `maskinporten jwk` with the key on "
            "the integration.",
            "The kid names another key of the integration: set MASKINPORTEN_KID to the kid of this key.",
            "A remote key was rotated (Vault, KMS, Key Vault): pin the key version that is registered.",
        ),
    ),
    Explanation(
        UNKNOWN_KID,
        "the kid is not registered on this integration; upload the key's public JWK in Samarbeidsportalen or fix kid",
        (
            "The kid is not registered on this integration: upload the public JWK (`maskinporten jwk`) in "
            "Samarbeidsportalen, or set MASKINPORTEN_KID to the kid the portal shows.",
            "The key is registered on an integration in the other environment, or on another integration.",
            "The key was registered in the last two minutes: Maskinporten takes up to two minutes to accept a new "
            "kid (`maskinporten keys rotate` waits for it before it switches).",
        ),
    ),
    Explanation(
        "MP-130",
        "the grant's iat/exp disagree with Maskinporten's clock; synchronise the system clock (NTP)",
        (
            "This machine's clock is more than 10 seconds off: synchronise it with NTP (in a container, the host's).",
            "`maskinporten doctor` shows the offset against Maskinporten's clock.",
        ),
        kind=ClockSkewError,
    ),
    Explanation(
        "MP-200",
        _MP200_HINT,
        (
            "The scope is not on the integration: add it in Samarbeidsportalen, or fix a typo in MASKINPORTEN_SCOPES.",
            "The API owner has not given your organisation access to the scope yet: ask them.",
            "For a scope delegated by a customer: add the scope to your own integration and send consumer_org.",
        ),
        refusal=True,
        kind=InvalidScopeError,
    ),
    Explanation(
        "MP-201",
        _MP200_HINT,
        refusal=True,
        kind=InvalidScopeError,
    ),
    Explanation(
        "MP-250",
        "your organisation has not been granted access to this scope by the API owner",
        (
            "The API owner has not granted your organisation (or the customer) access to this scope: apply for "
            "access with the API owner (for NAV's APIs, NAV).",
            "In test, access must be granted to the synthetic test organisation you use.",
        ),
        refusal=True,
    ),
    Explanation(
        "MP-251",
        "the customer has not delegated this scope to you in Altinn; their daglig leder (or someone with the right "
        "role) must delegate it to your organisation number",
        (
            "The customer has not delegated the scope to you in Altinn: their daglig leder (or someone with the "
            "access manager role) gives it under Profile > API access > Give and remove API access.",
            "The delegation went to another organisation number, e.g. a sub-unit: it must name the supplier's "
            "organisation number that owns the integration.",
            "MASKINPORTEN_CONSUMER_ORG is the wrong organisation, or the delegation was withdrawn.",
            "In test, the delegation is made in Altinn's test environment (TT02) with synthetic organisations.",
        ),
        refusal=True,
        kind=DelegationError,
    ),
    Explanation(
        OWN_ORGNO,
        "consumer_org is your own organisation number; leave consumer_org out to get a token for yourself",
    ),
    Explanation(
        "MP-301",
        "authorization_details has a type Maskinporten does not support; use urn:altinn:systemuser or "
        "urn:altinn:consent",
        refusal=True,
        kind=AuthorizationDetailsError,
    ),
    Explanation(
        "MP-302",
        "authorization_details has fields Maskinporten does not know; a system user takes type, systemuser_org and "
        "externalRef, a consent type, id and from",
        refusal=True,
        kind=AuthorizationDetailsError,
    ),
    Explanation(
        "MP-303",
        "authorization_details has a value Maskinporten does not accept: systemuser_org must be "
        '{"authority": "iso6523-actorid-upis", "ID": "0192:<orgno>"} with a valid organisation number, a consent id '
        "a UUID and from a party URN",
        refusal=True,
        error="invalid_authorization_details",
        kind=AuthorizationDetailsError,
    ),
    *(
        Explanation("MP-303", fix, (fix,), refusal=True, words=words, kind=SystemUserError)
        for fix, words in (
            (_MP303_CLIENT_ID, ("clientid", "client id")),
            (_MP303_EXTERNAL_REF, ("externalref",)),
            (_MP303_OWNER, ("owner",)),
        )
    ),
    Explanation(
        "MP-303",
        f"the system user is not set up as the grant says. Check: (1) {_MP303_CLIENT_ID}; (2) {_MP303_EXTERNAL_REF}; "
        f"(3) {_MP303_OWNER}; (4) {_MP303_APPROVED}",
        (_MP303_CLIENT_ID, _MP303_EXTERNAL_REF, _MP303_OWNER, _MP303_APPROVED),
        refusal=True,
        kind=SystemUserError,
    ),
)

#: Words of a description that identify an answer Maskinporten sends without an MP code (lower case).
_DESCRIBED: Final = (
    ("unknown key identifier", UNKNOWN_KID),
    ("client not found", "MP-100"),
    ("samme organisasjonsnummer", OWN_ORGNO),
    ("delegated", "MP-251"),
    ("issue time", "MP-130"),
    ("is expired", "MP-130"),
)
#: The MP code an OAuth error stands for when the answer has none.
_CODE_OF_ERROR: Final = {
    SYSTEMUSER_NOT_SET_UP: "MP-303",
    "invalid_scope": "MP-200",
    "invalid_authorization_details": "MP-303",
}
#: The exception of an answer whose explanation names none, by OAuth error.
_KIND_OF_ERROR: Final[dict[str | None, type[TokenRequestError]]] = {
    "invalid_grant": InvalidGrantError,
    "invalid_scope": InvalidScopeError,
    "invalid_authorization_details": AuthorizationDetailsError,
    "forbidden": AccessDeniedError,
    "access_denied": AccessDeniedError,
}
#: The exceptions that are refusals whatever their MP code (an answer about a customer or scope).
_REFUSING_KINDS: Final = (AccessDeniedError, InvalidScopeError)

_BY_KEY: Final[dict[str, tuple[Explanation, ...]]] = {}
for _entry in TABLE:
    _BY_KEY[_entry.key] = (*_BY_KEY.get(_entry.key, ()), _entry)
del _entry

_MP_CODE = re.compile(r"MP-\d{3}")


def mp_code(*texts: str | None) -> str | None:
    """Return the first MP code (``"MP-251"``) in ``texts``, or None.

    Maskinporten puts the code in ``error_uri``, in ``error_description``, or in both (maskinporten-protocol.md
    §4): pass both, ``error_uri`` first.
    """
    for text in texts:
        found = _MP_CODE.search(text) if text else None
        if found:
            return found.group(0)
    return None


def _keys(code: str | None, description: str, error: str | None) -> Iterable[str]:
    """The keys an answer may be explained by, the most telling first."""
    if error == SYSTEMUSER_NOT_SET_UP:
        yield "MP-303"
    if code is not None:
        yield code
    yield from (key for words, key in _DESCRIBED if words in description)
    if error in _CODE_OF_ERROR:
        yield _CODE_OF_ERROR[error]


def explain(code: str | None, description: str | None = None, error: str | None = None) -> Explanation | None:
    """Return the explanation of an answer with this MP code, ``error_description`` and OAuth error, or None."""
    lowered = (description or "").lower()
    for key in _keys(code, lowered, error):
        found = next((entry for entry in _BY_KEY.get(key, ()) if entry.fits(error, lowered)), None)
        if found is not None:
            return found
    return None


def hint_for(code: str | None, description: str | None = None, error: str | None = None) -> str | None:
    """Return a plain-words hint for an MP code, a description or an OAuth error, or None."""
    found = explain(code, description, error)
    return found.hint if found is not None else None


def refusal_error(
    status: int, error: str, code: str | None, description: str | None, *, environment: str | None = None
) -> TokenRequestError:
    """The typed exception of a 4xx answer with an OAuth ``error`` from the token endpoint, as the table explains it.

    The explanation names the exception and whether it is a refusal; without one (or one that names no exception)
    the OAuth error decides, and a 403 is an :class:`~maskinporten_auth.errors.AccessDeniedError`. ``environment``
    describes where the request went, for the hints that depend on it.
    """
    found = explain(code, description, error)
    hint = found.hint if found is not None else None
    if found is not None and found.names_environment and environment is not None:
        hint = f"{hint}; this request went to {environment}"
    kind = found.kind if found is not None and found.kind is not None else _KIND_OF_ERROR.get(error)
    if kind is None:
        kind = AccessDeniedError if status == 403 else TokenRequestError
    return kind(
        _MESSAGES[kind],
        status=status,
        error=error,
        code=code,
        description=description,
        hint=hint,
        refusal=issubclass(kind, _REFUSING_KINDS) or (found is not None and found.refusal),
    )


_MESSAGES: Final[dict[type[TokenRequestError], str]] = {
    TokenRequestError: "Maskinporten refused the token request",
    InvalidGrantError: "Maskinporten rejected the grant",
    ClockSkewError: "Maskinporten rejected the grant's timing",
    InvalidScopeError: "Maskinporten refused the scope",
    AccessDeniedError: "Maskinporten denied access to the scope",
    DelegationError: "the customer has not delegated the scope",
    AuthorizationDetailsError: "Maskinporten refused the grant's authorization_details",
    SystemUserError: "Maskinporten found no system user set up as the grant asks",
}
