"""AWS KMS signing backend for maskinporten-auth: ``AwsKmsSigner`` and the ``awskms:`` key URI."""

from .signer import AwsKmsSigner
from .uri import signer_from_uri

__all__ = ["AwsKmsSigner", "signer_from_uri"]
