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
]


#: A JWT, or any long run of token characters.
_TOKEN_LIKE = re.compile(r"[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*|[A-Za-z0-9_~+/=-]{40,}")


def quoted(text: str, *, secret: str | None = None, limit: int = 200) -> str:
    """A service's own words about a failure, fit for an exception or a log line.

    One line (a description never forges log lines), at most ``limit`` characters, with anything that looks like a
    token, and ``secret`` (what was sent), blanked out: a service may quote what it was given.
    """
    if secret:
        text = text.replace(secret, "<token>")
    return " ".join(_TOKEN_LIKE.sub("<token>", text).split())[:limit]


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
        description: Maskinporten's ``error_description``, on one line, with anything token-like blanked out.
        trace_id: the trace id Maskinporten put in the description, for its support desk.
        hint: what to do about it, in plain words.
        refusal: whether Maskinporten refused this customer or scope, an answer that will not change within
            seconds: a customer who has not delegated (MP-251), a system user that is not set up (MP-30x), a scope
            not granted (MP-250, MP-201) or not registered (``invalid_scope``). The token provider remembers such
            refusals briefly instead of asking again on every call. Set from the table in
            :mod:`maskinporten_auth.mp_codes`.
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
        refusal: bool = False,
    ) -> None:
        self.status = status
        self.refusal = refusal
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


_TRACE_ID = re.compile(r"trace_id:\s*([\w-]+)")


def _trace_id(description: str | None) -> str | None:
    if not description:
        return None
    found = _TRACE_ID.search(description)
    return found.group(1) if found else None
