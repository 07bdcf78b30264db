"""AzureKeyVaultSigner: the grant is signed by an RSA key in Azure Key Vault or Managed HSM."""

from __future__ import annotations

import logging
import threading
from enum import Enum
from typing import Any, Final

from azure.core.credentials import TokenCredential
from azure.keyvault.certificates import CertificateClient, KeyVaultCertificate
from azure.keyvault.keys import KeyClient, KeyOperation, KeyType, KeyVaultKey
from azure.keyvault.keys.crypto import CryptographyClient, SignatureAlgorithm
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from maskinporten_auth.certificates import CertificateChain
from maskinporten_auth.errors import ConfigurationError, SigningError
from maskinporten_auth.signer import DigestSigner

from .credentials import default_credential
from .errors import BACKEND, DISABLED_HINT, azure_errors
from .ids import VaultObjectId

__all__ = ["AzureKeyVaultSigner"]

_LOGGER = logging.getLogger(__name__)

_SIGNATURE_ALGORITHMS: Final = {
    "RS256": SignatureAlgorithm.rs256,
    "RS384": SignatureAlgorithm.rs384,
    "RS512": SignatureAlgorithm.rs512,
}
_RSA_KEY_TYPES: Final = frozenset({KeyType.rsa, KeyType.rsa_hsm})


class AzureKeyVaultSigner(DigestSigner):
    """Signs grants with an RSA key in Azure Key Vault (or Managed HSM); the private key never leaves the vault.

    ``key_id`` is the key's URL, ``https://<vault>.vault.azure.net/keys/<name>[/<version>]``. Without a version,
    the key's current version is looked up once, on first use, and pinned: a later rotation in Key Vault never
    silently changes the key that Maskinporten has registered. ``credential`` is any azure-core
    ``TokenCredential``; by default azure-identity's ``DefaultAzureCredential``, created when first needed.
    ``client_kwargs`` go to the SDK's clients (``CryptographyClient``, ``KeyClient``), e.g. ``api_version``,
    ``connection_verify`` or ``verify_challenge_resource``.

    The caller needs the RBAC role "Key Vault Crypto User" on the key, or the access-policy key permissions
    ``sign`` and ``get``. On first use the key is checked: RSA or RSA-HSM, enabled, ``sign`` among its permitted
    operations, and matching ``certificate_chain`` when one is given.

    :meth:`asign` runs the SDK's client in a worker thread, so the event loop is never blocked.
    """

    backend = BACKEND

    def __init__(
        self,
        key_id: str,
        *,
        credential: TokenCredential | None = None,
        kid: str | None = None,
        algorithm: str = "RS256",
        certificate_chain: bytes | str | CertificateChain | None = None,
        **client_kwargs: Any,
    ) -> None:
        super().__init__(kid=kid, algorithm=algorithm, certificate_chain=certificate_chain)
        _check_client_kwargs(client_kwargs)
        self._key_ref = VaultObjectId.parse(key_id, field="key_id", collection="keys")
        self._credential = credential
        self._owns_credential = False
        self._client_kwargs = client_kwargs
        self._key: KeyVaultKey | None = None
        self._client: CryptographyClient | None = None
        self._clients_lock = threading.Lock()

    @classmethod
    def from_certificate(
        cls,
        vault_url: str,
        name: str,
        *,
        version: str | None = None,
        intermediates: bytes | str | None = None,
        credential: TokenCredential | None = None,
        algorithm: str = "RS256",
        **client_kwargs: Any,
    ) -> AzureKeyVaultSigner:
        """Sign with the key of the Key Vault certificate ``name`` and send the certificate as ``x5c``.

        This is for an enterprise certificate (virksomhetssertifikat) whose key was generated in Key Vault and is
        not exportable. The certificate (its current version, or ``version``) is read now with the
        certificates API, which returns the public certificate only, never the key; ``intermediates`` (PEM) are
        the rest of the chain, leaf excluded, since Key Vault does not return them. The signer is pinned to the
        key version that belongs to this certificate version. Reading the certificate needs
        ``Microsoft.KeyVault/vaults/certificates/read`` (e.g. the role "Key Vault Reader") or the access-policy
        certificate permission ``get``.
        """
        ref = VaultObjectId.from_parts(vault_url, "certificates", name, version, field="certificate")
        _check_client_kwargs(client_kwargs)
        own_credential: TokenCredential | None = None
        if credential is None:
            credential = own_credential = default_credential()
        try:
            with (
                azure_errors(ref.url, subject="certificate"),
                CertificateClient(ref.vault_url, credential, **client_kwargs) as client,
            ):
                if ref.version is None:
                    certificate = client.get_certificate(ref.name)
                else:
                    certificate = client.get_certificate_version(ref.name, ref.version)
            key_id, chain = _certificate_chain(certificate, intermediates, ref)
            signer = cls(key_id, credential=credential, algorithm=algorithm, certificate_chain=chain, **client_kwargs)
        except BaseException:
            _close(own_credential)
            raise
        signer._owns_credential = own_credential is not None
        return signer

    @property
    def key_id(self) -> str:
        """The key's URL: with the pinned version once the key has been looked up, else as configured."""
        return self._key.id if self._key is not None else self._key_ref.url

    def _key_reference(self) -> str:
        """The key's URL as configured (with its version when one was given)."""
        return self._key_ref.url

    def __repr__(self) -> str:
        shown = f"kid={self.kid!r}" if self.kid is not None else f"x5c=<{len(self.x5c or [])} certificates>"
        return f"{type(self).__name__}({self.key_id!r}, {shown}, algorithm={self.algorithm!r})"

    def close(self) -> None:
        """Close the SDK client this signer opened, and the default credential if the signer created it.

        A credential passed in stays open: it belongs to the caller.
        """
        with self._clients_lock:
            client, self._client = self._client, None
            credential = self._credential if self._owns_credential else None
        _close(client)
        _close(credential)

    # --- the key: looked up once, pinned -------------------------------------------------------------------------

    def _get_credential(self) -> TokenCredential:
        with self._clients_lock:
            if self._credential is None:
                self._credential = default_credential()
                self._owns_credential = True
            return self._credential

    def _pin(self, key: KeyVaultKey) -> KeyVaultKey:
        """Keep the first key looked up; concurrent first lookups all end up with the same version."""
        with self._clients_lock:
            if self._key is None:
                self._key = key
                _LOGGER.debug("using Azure Key Vault key %s", key.id)
            return self._key

    def _resolve_key(self) -> KeyVaultKey:
        if self._key is not None:
            return self._key
        ref = self._key_ref
        with (
            azure_errors(ref.url),
            KeyClient(ref.vault_url, self._get_credential(), **self._client_kwargs) as client,
        ):
            key = client.get_key(ref.name, ref.version)
        return self._pin(key)

    def _require_rsa(self, key: KeyVaultKey) -> None:
        if key.key_type not in _RSA_KEY_TYPES:
            raise SigningError(
                f"the key type is {_text(key.key_type)}; Maskinporten needs an RSA key (RSA or RSA-HSM)",
                backend=self.backend,
                key=key.id,
                hint="create one with: az keyvault key create --kty RSA-HSM --size 2048 (RSA on the Standard tier)",
            )

    def _check_key(self) -> None:
        key = self._resolve_key()
        self._require_rsa(key)
        if key.properties.enabled is False:
            raise SigningError("the key is disabled", backend=self.backend, key=key.id, hint=DISABLED_HINT)
        if KeyOperation.sign not in key.key_operations:
            permitted = ", ".join(_text(op) for op in key.key_operations) or "none"
            raise SigningError(
                f"the key does not permit the sign operation (permitted: {permitted})",
                backend=self.backend,
                key=key.id,
                hint="permit it: az keyvault key set-attributes --ops sign verify ... (or create a new key version)",
            )

    def _fetch_public_key(self) -> rsa.RSAPublicKey:
        key = self._resolve_key()
        self._require_rsa(key)
        # JsonWebKey sets its members (n, e, ...) as instance attributes, which type checkers cannot see.
        modulus: bytes | None = getattr(key.key, "n", None)
        exponent: bytes | None = getattr(key.key, "e", None)
        if not modulus or not exponent:
            raise SigningError("Key Vault returned the key without its modulus", backend=self.backend, key=key.id)
        return rsa.RSAPublicNumbers(int.from_bytes(exponent, "big"), int.from_bytes(modulus, "big")).public_key()

    # --- signing -------------------------------------------------------------------------------------------------

    def _crypto_client(self) -> CryptographyClient:
        key = self._resolve_key()
        credential = self._get_credential()
        with self._clients_lock:
            if self._client is None:
                # Given the key itself, the client signs with exactly this version and never looks it up again.
                self._client = CryptographyClient(key, credential, **self._client_kwargs)
            return self._client

    def _sign_digest(self, digest: bytes) -> bytes:
        client = self._crypto_client()
        with azure_errors(self.key_id):
            result = client.sign(_SIGNATURE_ALGORITHMS[self.algorithm], digest)
        return bytes(result.signature)


def _check_client_kwargs(client_kwargs: dict[str, Any]) -> None:
    """Refuse SDK options that would put a secret in a log line."""
    if client_kwargs.get("logging_enable"):
        raise ConfigurationError(
            "logging_enable",
            "makes azure-core log every request header, the Key Vault bearer token included; leave it off and set "
            "the 'azure' logger to INFO for request logs with the Authorization header redacted",
        )


def _close(resource: object) -> None:
    """Close an SDK client or credential, if there is one and it can be closed."""
    close = getattr(resource, "close", None)
    if close is not None:
        close()


def _text(value: object) -> str:
    """How Key Vault spells an enum member ("RSA-HSM", "sign"), or the string it sent."""
    return str(value.value) if isinstance(value, Enum) else str(value)


def _certificate_chain(
    certificate: KeyVaultCertificate, intermediates: bytes | str | None, ref: VaultObjectId
) -> tuple[str, CertificateChain]:
    """The key id and the x5c chain (Key Vault's leaf, then ``intermediates``) of a Key Vault certificate."""
    if not certificate.cer or not certificate.key_id:
        raise ConfigurationError("certificate", f"Key Vault returned {ref.url} without its certificate or key id")
    leaf = x509.load_der_x509_certificate(bytes(certificate.cer))
    return certificate.key_id, CertificateChain.of_leaf(leaf, intermediates=intermediates)
