"""PKCS#11 signing backend for maskinporten-auth: ``Pkcs11Signer`` and the RFC 7512 ``pkcs11:`` key URI.

The Maskinporten grant is signed on the token (an on-premises HSM such as Thales Luna, Utimaco or nShield, a
YubiHSM, a smart card, or SoftHSM2); the private key never leaves it.
"""

from .signer import Pkcs11Signer
from .uri import parse_uri, signer_from_uri

__all__ = ["Pkcs11Signer", "parse_uri", "signer_from_uri"]
