"""The exceptions raised by maskinporten-auth.

Everything the library raises derives from :class:`MaskinportenError`. Messages never contain a private key, a
grant or an access token.
"""

from __future__ import annotations

import re

__all__ = [
    "AccessDeniedError",
    "AltinnExchangeError",
    "AuthorizationDetailsError",
    "ClockSkewError",
    "ConfigurationError",
    "DelegationError",
    "InvalidGrantError",
    "InvalidResponseError",
    "InvalidScopeError",
    "MaskinportenError",
    "NetworkError",
    "RateLimitedError",
    "ServerError",
    "SigningError",
    "SystemUserError",
    "TokenRequestError",
    "hint_for",
]


class MaskinportenError(Exception):
    """Base class of every exception raised by maskinporten-auth."""


class ConfigurationError(MaskinportenError, ValueError):
    """A setting is invalid. Raised at construction; ``field`` names the setting."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")


class SigningError(MaskinportenError):
    """The key backend could not sign the grant (or describe its key).

    ``backend`` names the backend ("local", "aws-kms", "vault-transit", "azure-key-vault"), ``key`` the key it was
    asked to use, and ``hint`` says what to do.
    """

    def __init__(self, message: str, *, backend: str, key: str | None = None, hint: str | None = None) -> None:
        self.backend = backend
        self.key = key
        self.hint = hint
        self.message = message
        text = f"{backend}: {message}" if key is None else f"{backend} key {key!r}: {message}"
        super().__init__(f"{text} (hint: {hint})" if hint else text)


class TokenRequestError(MaskinportenError):
    """Maskinporten's token endpoint refused or failed a token request.

    Attributes:
        status: the HTTP status, or None when no response arrived.
        error: the OAuth ``error`` field (``invalid_grant``, ``invalid_scope``, ``forbidden``, ...).
        code: the MP code (``"MP-251"``) from ``error_uri`` or ``error_description``, when Maskinporten gave one.
        description: Maskinporten's ``error_description``, verbatim.
        trace_id: the trace id Maskinporten put in the description, for its support desk.
        hint: what to do about it, in plain words.
    """

    #: Who gave the answer, in the message: ``Maskinporten`` (or ``Altinn`` for the token exchange).
    answered_by = "Maskinporten"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        error: str | None = None,
        code: str | None = None,
        description: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.status = status
        self.error = error
        self.code = code
        self.description = description
        self.trace_id = _trace_id(description)
        self.hint = hint
        parts = [message]
        details = ", ".join(
            f"{name}={value}" for name, value in (("status", status), ("error", error), ("code", code)) if value
        )
        if details:
            parts.append(f"[{details}]")
        if description:
            parts.append(f"{self.answered_by} says: {description}")
        if hint:
            parts.append(f"Hint: {hint}")
        super().__init__(" ".join(parts))

    @property
    def retryable(self) -> bool:
        """Whether a new attempt, with a new grant, may succeed."""
        return False

    @property
    def refusal(self) -> bool:
        """Whether Maskinporten refused this customer or scope, an answer that will not change within seconds.

        A customer who has not delegated (MP-251), a system user that is not set up (MP-30x), a scope not granted
        (MP-250, MP-201) or not registered (``invalid_scope``). The token provider remembers such refusals briefly
        instead of asking again on every call.
        """
        return (
            isinstance(self, (AccessDeniedError, InvalidScopeError))
            or self.code in _REFUSAL_CODES
            or self.error == "invalid_authorization_details"
        )


class InvalidGrantError(TokenRequestError):
    """Maskinporten rejected the JWT grant (``invalid_grant``): key, signature, claims or client."""


class ClockSkewError(InvalidGrantError):
    """The grant's ``iat``/``exp`` disagree with Maskinporten's clock (MP-130)."""


class InvalidScopeError(TokenRequestError):
    """A requested scope is not registered on the client nor delegated to it (``invalid_scope``, MP-200)."""


class AccessDeniedError(TokenRequestError):
    """Maskinporten forbade the request (HTTP 403, ``forbidden``; MP-250)."""


class DelegationError(AccessDeniedError):
    """The customer (``consumer_org``) has not delegated the scope to the supplier in Altinn (MP-251)."""


class AuthorizationDetailsError(TokenRequestError):
    """Maskinporten refused the grant's ``authorization_details`` (``invalid_authorization_details``).

    MP-301: a ``type`` it does not know; MP-302: fields it does not know; MP-303: values it does not accept (a
    malformed ``systemuser_org``, a consent that does not exist). A refusal, remembered briefly.
    """


class SystemUserError(AuthorizationDetailsError):
    """The Altinn system user is not set up as the grant asks (MP-303, ``invalid_altinn_customer_configuration``).

    Altinn's documented causes: your system in the system register has no (or another) ClientId; the system user
    request was made with an ``externalRef`` the grant did not send; ``systemuser_org`` is not the system user's
    owner (for an agent system user: the agent, not one of its clients). ``hint`` names the cause when
    Maskinporten's description tells which, and lists all three otherwise.
    """


class AltinnExchangeError(TokenRequestError):
    """Altinn's token exchange refused the Maskinporten token (a 4xx answer other than 429).

    ``status`` is the exchange's HTTP status; ``description`` its message, when it gave one. Transient failures of
    the exchange raise the retryable types instead (:class:`NetworkError`, :class:`ServerError`,
    :class:`RateLimitedError`, :class:`InvalidResponseError`), with messages that name the exchange.
    """

    answered_by = "Altinn"


class ServerError(TokenRequestError):
    """Maskinporten answered with a 5xx status. Retryable."""

    @property
    def retryable(self) -> bool:
        """Server errors are worth another attempt."""
        return True


class RateLimitedError(ServerError):
    """Maskinporten answered 429; ``retry_after`` holds its ``Retry-After`` in seconds when it sent one."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: object) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kwargs)  # type: ignore[arg-type]


class NetworkError(TokenRequestError):
    """No usable answer reached us: connection refused or reset, DNS, TLS, or a timeout. Retryable."""

    @property
    def retryable(self) -> bool:
        """Network failures are worth another attempt."""
        return True


class InvalidResponseError(TokenRequestError):
    """The token endpoint answered with something that is not a valid token response. Retryable."""

    @property
    def retryable(self) -> bool:
        """A garbled answer (a proxy's HTML page, a truncated body) may be transient."""
        return True


_REFUSAL_CODES = frozenset({"MP-200", "MP-201", "MP-250", "MP-251", "MP-301", "MP-302", "MP-303"})
#: The MP codes of refused ``authorization_details`` (maskinporten-protocol.md §4, §5).
AUTHORIZATION_DETAILS_CODES = frozenset({"MP-301", "MP-302", "MP-303"})
#: The OAuth error of an Altinn system user that is not set up as the grant says (MP-303).
SYSTEMUSER_NOT_SET_UP = "invalid_altinn_customer_configuration"

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
_INVALID_VALUES = (
    "authorization_details has a value Maskinporten does not accept: systemuser_org must be "
    '{"authority": "iso6523-actorid-upis", "ID": "0192:<orgno>"} with a valid organisation number, a consent id a '
    "UUID and from a party URN"
)
#: Maskinporten's MP-303 descriptions as far as they tell the cause apart, and what to do about each.
_MP303_CAUSES: tuple[tuple[str, str], ...] = (
    ("clientid", _MP303_CLIENT_ID),
    ("client id", _MP303_CLIENT_ID),
    ("externalref", _MP303_EXTERNAL_REF),
    ("owner", _MP303_OWNER),
)

_HINTS: dict[str, str] = {
    "MP-011": "the assertion is not a JWT Maskinporten can read (three base64url parts of JSON), or a claim has "
    "the wrong type (resource, for one, must be an array of strings)",
    "MP-012": "a grant was sent twice; every request must carry a fresh grant with a new jti",
    "MP-100": "check client_id: the integration must exist in this environment (test and prod are separate)",
    "MP-110": "the grant's aud must be the environment's issuer exactly, with the trailing slash",
    "MP-120": "the enterprise certificate (virksomhetssertifikat) is not trusted here; test certificates work "
    "only in test and production certificates only in prod",
    "MP-121": "the key or certificate has expired; register a new one on the integration",
    "MP-122": "the enterprise certificate belongs to another organisation than the integration; sign with your "
    "own organisation's virksomhetssertifikat, or use the integration of the certificate's organisation",
    "MP-123": "x5c must be a JSON array of base64 DER certificates, leaf first",
    "MP-124": "the signature is empty or does not match the registered key; check that kid names the key that signs",
    "MP-130": "the grant's iat/exp disagree with Maskinporten's clock; synchronise the system clock (NTP)",
    "MP-200": "the scope is not registered on the integration; add it in Samarbeidsportalen, or have the "
    "customer delegate it in Altinn and send consumer_org",
    "MP-250": "your organisation has not been granted access to this scope by the API owner",
    "MP-251": "the customer has not delegated this scope to you in Altinn; their daglig leder (or someone "
    "with the right role) must delegate it to your organisation number",
    "MP-301": "authorization_details has a type Maskinporten does not support; use urn:altinn:systemuser or "
    "urn:altinn:consent",
    "MP-302": "authorization_details has fields Maskinporten does not know; a system user takes type, "
    "systemuser_org and externalRef, a consent type, id and from",
    "MP-303": "the system user is not set up as the grant says. Check: (1) "
    + _MP303_CLIENT_ID
    + "; (2) "
    + _MP303_EXTERNAL_REF
    + "; (3) "
    + _MP303_OWNER
    + "; (4) the customer has approved the system user request",
}

_DESCRIPTION_HINTS: tuple[tuple[str, str], ...] = (
    (
        "unknown key identifier",
        "the kid is not registered on this integration; upload the key's public JWK in Samarbeidsportalen or fix kid",
    ),
    ("client not found", _HINTS["MP-100"]),
    (
        "samme organisasjonsnummer",
        "consumer_org is your own organisation number; leave consumer_org out to get a token for yourself",
    ),
)

_MP_CODE = re.compile(r"MP-\d{3}")
_TRACE_ID = re.compile(r"trace_id:\s*([\w-]+)")


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


def hint_for(code: str | None, description: str | None = None, error: str | None = None) -> str | None:
    """Return a plain-words hint for an MP code, a description or an OAuth error, or None."""
    lowered = (description or "").lower()
    if code == "MP-303" and error == "invalid_authorization_details":
        return _INVALID_VALUES
    if code == "MP-303" or error == SYSTEMUSER_NOT_SET_UP:
        cause = next((hint for needle, hint in _MP303_CAUSES if needle in lowered), None)
        return cause or _HINTS["MP-303"]
    if code and code in _HINTS:
        return _HINTS[code]
    for needle, hint in _DESCRIPTION_HINTS:
        if needle in lowered:
            return hint
    if error == "invalid_scope":
        return _HINTS["MP-200"]
    return None


def _trace_id(description: str | None) -> str | None:
    if not description:
        return None
    found = _TRACE_ID.search(description)
    return found.group(1) if found else None
