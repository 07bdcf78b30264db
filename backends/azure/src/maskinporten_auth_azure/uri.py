"""The ``azurekv:`` key URI: ``azurekv://<vault host>/keys/<name>[/<version>]`` (or ``/certificates/...``)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from maskinporten_auth.errors import ConfigurationError
from maskinporten_auth.signer import refuse_kid_with_certificate

from .ids import VaultObjectId
from .signer import AzureKeyVaultSigner

__all__ = ["signer_from_uri"]

_FORMS = "azurekv://<vault host>/keys/<name>[/<version>] or azurekv://<vault host>/certificates/<name>[/<version>]"


def signer_from_uri(
    uri: str, *, kid: str | None = None, algorithm: str = "RS256", **options: Any
) -> AzureKeyVaultSigner:
    """Entry point for ``azurekv:`` URIs; ``options`` go to :class:`AzureKeyVaultSigner`.

    ``azurekv://myvault.vault.azure.net/keys/maskinporten`` signs with the key ``maskinporten`` (its current
    version, pinned on first use); ``azurekv://myvault.vault.azure.net/certificates/virksomhet`` signs with the
    non-exportable key of a Key Vault certificate and sends the certificate as ``x5c`` (see
    :meth:`AzureKeyVaultSigner.from_certificate`; ``intermediates`` may be given as an option).
    """
    parts = urlsplit(uri)
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ConfigurationError("key", f"expected {_FORMS}, without credentials, query or fragment")
    if parts.scheme != "azurekv" or not parts.hostname:
        raise ConfigurationError("key", f"expected {_FORMS}, got {uri!r}")
    https_url = f"https://{parts.netloc}{parts.path}"
    if parts.path.startswith("/certificates/"):
        refuse_kid_with_certificate(kid, "the Key Vault certificate")
        ref = VaultObjectId.parse(https_url, field="key", collection="certificates")
        return AzureKeyVaultSigner.from_certificate(
            ref.vault_url, ref.name, version=ref.version, algorithm=algorithm, **options
        )
    if not parts.path.startswith("/keys/"):
        raise ConfigurationError("key", f"expected {_FORMS}, got {uri!r}")
    ref = VaultObjectId.parse(https_url, field="key", collection="keys")
    return AzureKeyVaultSigner(ref.url, kid=kid, algorithm=algorithm, **options)
