"""Google Cloud KMS signing backend for maskinporten-auth: the grant is signed by a key version in Cloud KMS."""

from .errors import KmsIntegrityError
from .signer import GcpKmsSigner
from .uri import signer_from_uri

__all__ = ["GcpKmsSigner", "KmsIntegrityError", "signer_from_uri"]
