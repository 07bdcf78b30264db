"""Maskinporten access tokens for httpx and requests."""

import logging

from .altinn import AltinnAuth
from .auth import MaskinportenAuth
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
from .readiness import Readiness
from .retry import RetryPolicy
from .signer import DigestSigner, Signer
from .uri import signer_from_uri

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
    "consent_authorization",
    "signer_from_uri",
    "systemuser_authorization",
]

logging.getLogger("maskinporten_auth").addHandler(logging.NullHandler())
