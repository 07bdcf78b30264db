"""VaultTransitSigner: the grant is signed by a HashiCorp Vault (or OpenBao) Transit RSA key."""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from typing import Any, Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from maskinporten_auth.certificates import CertificateChain
from maskinporten_auth.errors import ConfigurationError
from maskinporten_auth.signer import DigestSigner

from .transit import BACKEND, TransitClient, TransitKey

__all__ = ["VaultTransitSigner"]

logger = logging.getLogger(__name__)

_HASH_ALGORITHMS: Final = {"RS256": "sha2-256", "RS384": "sha2-384", "RS512": "sha2-512"}
_KEY_NAME: Final = re.compile(r"\w([\w.-]*\w)?")
_MOUNT_SEGMENT: Final = re.compile(r"[\w.-]+")


def _validate_key_name(value: object) -> str:
    if not isinstance(value, str) or not _KEY_NAME.fullmatch(value):
        raise ConfigurationError(
            "key_name", f"must be a Transit key name (letters, digits, '_', '-', '.'), got {value!r}"
        )
    return value


def _validate_mount_point(value: object) -> str:
    mount = value.strip("/") if isinstance(value, str) else ""
    segments = mount.split("/")
    if not all(_MOUNT_SEGMENT.fullmatch(segment) and segment not in (".", "..") for segment in segments):
        raise ConfigurationError(
            "mount_point", f"must be the path Transit is enabled at, e.g. 'transit', got {value!r}"
        )
    return mount


def _validate_key_version(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError("key_version", f"must be a positive integer or None, got {value!r}")
    return value


@dataclass(frozen=True)
class _PinnedKey:
    version: int
    public_key_pem: str


class VaultTransitSigner(DigestSigner):
    """Signs with a Vault Transit RSA key (rsa-2048, rsa-3072 or rsa-4096); the key never leaves Vault.

    The grant's digest is computed here and Vault signs it with PKCS#1 v1.5 (not Vault's default PSS), at
    exactly one key version: ``key_version`` if given, otherwise the key's latest version at first use.
    A rotation in Vault therefore never changes the key that signs; move the pin only after the new version's
    public JWK is registered in Maskinporten.

    Args:
        key_name: the Transit key's name.
        mount_point: the path the Transit engine is enabled at.
        key_version: the key version to sign with; None pins the latest version at first use.
        kid: the key id registered on the Maskinporten integration.
        algorithm: RS256, RS384 or RS512.
        client: an authenticated ``hvac.Client`` (token, AppRole, Kubernetes, ..., and its namespace); by
            default one is created on first use from ``VAULT_ADDR``, ``VAULT_TOKEN`` and ``VAULT_NAMESPACE``.
        certificate_chain: PEM certificates, leaf first, sent as ``x5c`` instead of ``kid``; the leaf must
            certify the Vault key (checked on first use).


    A key that is missing, not RSA or cannot sign, a missing version, a 403 from Vault and network failures
    raise :class:`~maskinporten_auth.errors.SigningError` (on first use for the key checks), with a hint.
    """

    backend = BACKEND

    def __init__(
        self,
        key_name: str,
        *,
        mount_point: str = "transit",
        key_version: int | None = None,
        kid: str | None = None,
        algorithm: str = "RS256",
        client: Any | None = None,
        certificate_chain: bytes | str | CertificateChain | None = None,
    ) -> None:
        super().__init__(kid=kid, algorithm=algorithm, certificate_chain=certificate_chain)
        self.key_name = _validate_key_name(key_name)
        self.mount_point = _validate_mount_point(mount_point)
        self._requested_version = _validate_key_version(key_version)
        self._transit = TransitClient(client, mount_point=self.mount_point, key_name=self.key_name)
        self._pinned: _PinnedKey | None = None
        self._pin_lock = threading.Lock()

    @property
    def key_version(self) -> int | None:
        """The key version this signer signs with: as given, or the latest at first use (None until then)."""
        return self._pinned.version if self._pinned is not None else self._requested_version

    def _key_reference(self) -> str:
        """The mount, the key and the pinned version (``latest`` when none is configured)."""
        return f"{self.mount_point}/{self.key_name}@{self._requested_version or 'latest'}"

    def _pin(self) -> _PinnedKey:
        """Read the key once, check that it can sign, and fix the version to sign with."""
        if self._pinned is None:
            with self._pin_lock:
                if self._pinned is None:
                    self._pinned = self._choose_version(self._transit.read_key())
                    logger.debug("Vault Transit key %s pinned at version %d", self._transit.path, self._pinned.version)
        return self._pinned

    def _choose_version(self, key: TransitKey) -> _PinnedKey:
        if not key.type.startswith("rsa-"):
            raise self._transit.error(
                f"is of type {key.type!r}; Maskinporten needs an RSA signing key",
                hint="create a key of type rsa-2048, rsa-3072 or rsa-4096",
            )
        if not key.supports_signing:
            raise self._transit.error(f"Vault says this {key.type} key does not support signing")
        version = self._requested_version or key.latest_version
        if version > key.latest_version:
            raise self._transit.error(
                f"has no version {version}; the latest version is {key.latest_version}",
                hint="set key_version to a version that exists (see `vault read "
                f"{self._transit.mount_point}/keys/{self.key_name}`)",
            )
        if version < key.min_encryption_version:
            raise self._transit.error(
                f"cannot sign with version {version}: the key's min_encryption_version is {key.min_encryption_version}",
                hint="move key_version to a newer version whose JWK is registered in Maskinporten, or lower "
                "min_encryption_version",
            )
        public_key_pem = key.public_keys.get(version)
        if public_key_pem is None:
            raise self._transit.error(
                f"version {version} is no longer in Vault (trimmed, or below min_decryption_version)",
                hint="move key_version to a version Vault still holds",
            )
        return _PinnedKey(version, public_key_pem)

    def _check_key(self) -> None:
        """Check on first use that the key exists, is RSA, can sign and has the pinned version."""
        self._pin()

    def _fetch_public_key(self) -> rsa.RSAPublicKey:
        """Return the pinned version's public key, from ``read_key``."""
        pem = self._pin().public_key_pem
        try:
            key = serialization.load_pem_public_key(pem.encode("ascii"))
        except ValueError:
            raise self._transit.error("Vault returned a public key that is not valid PEM") from None
        if not isinstance(key, rsa.RSAPublicKey):
            raise self._transit.error(f"Vault returned a {type(key).__name__} public key, not RSA")
        return key

    def _sign_digest(self, digest: bytes) -> bytes:
        """Have Vault sign ``digest`` with the pinned version, PKCS#1 v1.5."""
        version = self._pin().version
        signature = self._transit.sign(digest, hash_algorithm=_HASH_ALGORITHMS[self.algorithm], version=version)
        if signature.version != version:
            raise self._transit.error(f"Vault signed with version {signature.version} instead of version {version}")
        return signature.value

    def _repr_fields(self) -> list[str]:
        key = [f"{self.key_name!r}", f"mount_point={self.mount_point!r}", f"key_version={self.key_version!r}"]
        return key + super()._repr_fields()
