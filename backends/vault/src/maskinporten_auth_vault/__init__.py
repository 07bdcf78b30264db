"""HashiCorp Vault / OpenBao Transit signing backend for maskinporten-auth.

:class:`VaultTransitSigner` signs the Maskinporten grant with a Transit RSA key, pinned to one key version;
the key URI ``vault-transit://<mount>/<key>[?version=N]`` resolves to it through :func:`signer_from_uri`.
"""

from .signer import VaultTransitSigner
from .transit import policy
from .uri import signer_from_uri

__all__ = ["VaultTransitSigner", "policy", "signer_from_uri"]
