"""Maskinporten access tokens for httpx and requests.

The public names below are imported on first use (PEP 562), so ``import maskinporten_auth`` stays cheap: the key
and certificate machinery load only when a program touches them.
"""

from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .auth import AltinnAuth, MaskinportenAuth, Readiness
    from .cache import RefreshPolicy, TokenCache, TokenStore
    from .environment import PROD, TEST, Environment
    from .errors import (
        AccessDeniedError,
        AltinnExchangeError,
        AuthorizationDetailsError,
        ClockSkewError,
        ConfigurationError,
        DelegationError,
        InvalidGrantError,
        InvalidResponseError,
        InvalidScopeError,
        MaskinportenError,
        NetworkError,
        RateLimitedError,
        ServerError,
        SigningError,
        SystemUserError,
        TokenRequestError,
    )
    from .grant import consent_authorization, systemuser_authorization
    from .local_key import LocalKeySigner
    from .provider import TokenEvent
    from .retry import RetryPolicy
    from .signer import DigestSigner, Signer
    from .uri import signer_from_uri

    __version__: str

__all__ = [
    "PROD",
    "TEST",
    "AccessDeniedError",
    "AltinnAuth",
    "AltinnExchangeError",
    "AuthorizationDetailsError",
    "ClockSkewError",
    "ConfigurationError",
    "DelegationError",
    "DigestSigner",
    "Environment",
    "InvalidGrantError",
    "InvalidResponseError",
    "InvalidScopeError",
    "LocalKeySigner",
    "MaskinportenAuth",
    "MaskinportenError",
    "NetworkError",
    "RateLimitedError",
    "Readiness",
    "RefreshPolicy",
    "RetryPolicy",
    "ServerError",
    "Signer",
    "SigningError",
    "SystemUserError",
    "TokenCache",
    "TokenEvent",
    "TokenRequestError",
    "TokenStore",
    "__version__",
    "consent_authorization",
    "signer_from_uri",
    "systemuser_authorization",
]

# The module that defines each public name.
_MODULE_OF = {
    "AltinnAuth": "auth",
    "MaskinportenAuth": "auth",
    "RefreshPolicy": "cache",
    "TokenCache": "cache",
    "TokenStore": "cache",
    "PROD": "environment",
    "TEST": "environment",
    "Environment": "environment",
    "consent_authorization": "grant",
    "systemuser_authorization": "grant",
    "LocalKeySigner": "local_key",
    "TokenEvent": "provider",
    "Readiness": "auth",
    "RetryPolicy": "retry",
    "DigestSigner": "signer",
    "Signer": "signer",
    "signer_from_uri": "uri",
    **{name: "errors" for name in __all__ if name.endswith("Error")},
}


def __getattr__(name: str) -> Any:
    """Import a public name's module the first time the name is used, and keep the value here."""
    if name == "__version__":
        from importlib.metadata import version

        value: Any = version("maskinporten-auth")
    elif name in _MODULE_OF:
        value = getattr(importlib.import_module(f".{_MODULE_OF[name]}", __name__), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


logging.getLogger("maskinporten_auth").addHandler(logging.NullHandler())
