"""Azure Key Vault signing backend for maskinporten-auth: the grant is signed in Key Vault or Managed HSM."""

from .signer import AzureKeyVaultSigner
from .uri import signer_from_uri

__all__ = ["AzureKeyVaultSigner", "signer_from_uri"]
