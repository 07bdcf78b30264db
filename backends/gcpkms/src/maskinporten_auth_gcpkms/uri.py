"""The ``gcpkms:`` key URI: ``gcpkms://projects/<p>/locations/<l>/keyRings/<r>/cryptoKeys/<k>/cryptoKeyVersions/<n>``."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from maskinporten_auth.errors import ConfigurationError

from .names import FORM
from .signer import GcpKmsSigner

__all__ = ["key_version_name_from_uri", "signer_from_uri"]

_URI_FORM = f"gcpkms://{FORM}"


def key_version_name_from_uri(uri: str) -> str:
    """The key version name in a ``gcpkms:`` URI (checked by :class:`GcpKmsSigner`); ConfigurationError for ``key``."""
    parts = urlsplit(uri)
    if parts.scheme.lower() != "gcpkms" or not uri.lower().startswith("gcpkms://"):
        raise ConfigurationError("key", f"expected {_URI_FORM}, got {uri!r}")
    if parts.query or parts.fragment or "@" in parts.netloc:
        raise ConfigurationError("key", f"a gcpkms: URI takes no credentials, query or fragment; expected {_URI_FORM}")
    return f"{parts.netloc}{parts.path}"


def signer_from_uri(uri: str, *, kid: str | None = None, algorithm: str | None = None, **options: Any) -> GcpKmsSigner:
    """Entry point for ``gcpkms://projects/.../cryptoKeyVersions/N``; ``options`` go to :class:`GcpKmsSigner`.

    ``algorithm=None`` and ``kid=None`` take the key version's own algorithm and its key's thumbprint.
    """
    name = key_version_name_from_uri(uri)
    try:
        return GcpKmsSigner(name, kid=kid, algorithm=algorithm, **options)
    except ConfigurationError as exc:
        if exc.field != "key_version_name":
            raise
        raise ConfigurationError("key", exc.problem) from None
