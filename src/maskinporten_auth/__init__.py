"""Maskinporten access tokens for httpx and requests."""

from .environment import PROD, TEST, Environment
from .errors import (
    AccessDeniedError,
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
    TokenRequestError,
)
from .local_key import LocalKeySigner
from .signer import DigestSigner, Signer
from .uri import signer_from_uri

__all__ = [
    "PROD",
    "TEST",
    "AccessDeniedError",
    "ClockSkewError",
    "ConfigurationError",
    "DelegationError",
    "DigestSigner",
    "Environment",
    "InvalidGrantError",
    "InvalidResponseError",
    "InvalidScopeError",
    "LocalKeySigner",
    "MaskinportenError",
    "NetworkError",
    "RateLimitedError",
    "ServerError",
    "Signer",
    "SigningError",
    "TokenRequestError",
    "signer_from_uri",
]
