"""Identifiers of Key Vault objects: ``https://<vault host>/<keys|certificates>/<name>[/<version>]``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from maskinporten_auth.errors import ConfigurationError

__all__ = ["Collection", "VaultObjectId"]

Collection = Literal["keys", "certificates"]

# Key Vault and Managed HSM object names: 1-127 letters, digits and hyphens. Versions are 32 hex digits; any
# alphanumeric string is accepted, and the service is the judge.
_NAME = re.compile(r"[0-9A-Za-z-]{1,127}")
_VERSION = re.compile(r"[0-9A-Za-z]{1,64}")


@dataclass(frozen=True)
class VaultObjectId:
    """A key or certificate in a Key Vault or Managed HSM; ``version`` None means "the current version"."""

    vault_url: str
    collection: Collection
    name: str
    version: str | None = None

    @classmethod
    def parse(cls, url: object, *, field: str, collection: Collection) -> VaultObjectId:
        """Parse ``https://<vault host>/<collection>/<name>[/<version>]``; raise ConfigurationError for ``field``."""
        example = f"https://<vault>.vault.azure.net/{collection}/<name>[/<version>]"
        if not isinstance(url, str) or not url:
            raise ConfigurationError(field, f"must be a Key Vault URL such as {example}")
        parts = urlsplit(url)
        if parts.username or parts.password or parts.query or parts.fragment:
            # Not echoed: whatever is there may be a secret.
            raise ConfigurationError(field, f"must not have credentials, a query or a fragment; use {example}")
        if parts.scheme != "https" or not parts.hostname:
            raise ConfigurationError(field, f"must be an https URL such as {example}, got {url!r}")
        segments = parts.path.strip("/").split("/")
        if len(segments) not in (2, 3) or segments[0] != collection:
            raise ConfigurationError(field, f"must look like {example}, got {url!r}")
        return cls.from_parts(f"https://{parts.netloc}", collection, *segments[1:], field=field)

    @classmethod
    def from_parts(
        cls, vault_url: str, collection: Collection, name: str, version: str | None = None, *, field: str
    ) -> VaultObjectId:
        """Build an identifier from a vault URL (``https://<vault host>``), a name and an optional version."""
        parts = urlsplit(vault_url)
        if parts.username or parts.password or parts.query or parts.fragment:
            raise ConfigurationError(field, "the vault URL must be https://<vault host>, without credentials or query")
        if parts.scheme != "https" or not parts.hostname or parts.path.strip("/"):
            raise ConfigurationError(field, f"the vault URL must be https://<vault host>, got {vault_url!r}")
        if not _NAME.fullmatch(name):
            raise ConfigurationError(field, f"{name!r} is not a Key Vault name (1-127 letters, digits, hyphens)")
        if version is not None and not _VERSION.fullmatch(version):
            raise ConfigurationError(field, f"{version!r} is not a Key Vault object version")
        return cls(f"https://{parts.netloc}", collection, name, version)

    @property
    def url(self) -> str:
        """The object's URL, with its version when it has one."""
        base = f"{self.vault_url}/{self.collection}/{self.name}"
        return f"{base}/{self.version}" if self.version else base

    def __str__(self) -> str:
        return self.url
