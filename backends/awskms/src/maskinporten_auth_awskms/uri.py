"""The ``awskms:`` key URI: ``awskms:///<key id | key ARN | alias/name | alias ARN>``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from maskinporten_auth.certificates import CertificateChain
from maskinporten_auth.errors import ConfigurationError

from .signer import AwsKmsSigner, validate_key_id

if TYPE_CHECKING:
    from mypy_boto3_kms.client import KMSClient

__all__ = ["key_id_from_uri", "signer_from_uri"]

_FORM = "awskms:///<key id, key ARN or alias/name>"


def key_id_from_uri(uri: str) -> str:
    """Return the key reference in an ``awskms:`` URI, or raise ConfigurationError("key", ...)."""
    parts = urlsplit(uri)
    if parts.scheme.lower() != "awskms":
        raise ConfigurationError("key", f"expected {_FORM}, got {uri!r}")
    if parts.netloc or not parts.path.startswith("/"):
        raise ConfigurationError("key", f"expected {_FORM} (three slashes, no host), got {uri!r}")
    if parts.query or parts.fragment:
        raise ConfigurationError("key", f"an awskms: URI takes no query or fragment, got {uri!r}")
    return validate_key_id(unquote(parts.path.removeprefix("/")), field="key")


def signer_from_uri(
    uri: str,
    *,
    kid: str | None = None,
    algorithm: str = "RS256",
    client: KMSClient | None = None,
    certificate_chain: bytes | str | CertificateChain | None = None,
    **options: Any,
) -> AwsKmsSigner:
    """Entry point for ``awskms:///alias/maskinporten`` (also a key id or an ARN after the three slashes)."""
    if options:
        raise ConfigurationError(next(iter(options)), "does not apply to awskms: keys")
    return AwsKmsSigner(
        key_id_from_uri(uri), kid=kid, algorithm=algorithm, client=client, certificate_chain=certificate_chain
    )
