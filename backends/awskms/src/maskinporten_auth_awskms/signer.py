"""AwsKmsSigner: the grant is signed by an asymmetric RSA key in AWS KMS; the private key never leaves KMS."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, TypeVar

import boto3
from botocore.exceptions import BotoCoreError, ClientError
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from maskinporten_auth.certificates import CertificateChain
from maskinporten_auth.errors import ConfigurationError, SigningError
from maskinporten_auth.signer import DigestSigner

from .errors import BACKEND, from_botocore_error, from_client_error

if TYPE_CHECKING:
    from mypy_boto3_kms.client import KMSClient
    from mypy_boto3_kms.literals import SigningAlgorithmSpecType
    from mypy_boto3_kms.type_defs import KeyMetadataTypeDef

__all__ = ["AwsKmsSigner", "validate_key_id"]

_T = TypeVar("_T")

_SIGNING_ALGORITHMS: Final[dict[str, SigningAlgorithmSpecType]] = {
    "RS256": "RSASSA_PKCS1_V1_5_SHA_256",
    "RS384": "RSASSA_PKCS1_V1_5_SHA_384",
    "RS512": "RSASSA_PKCS1_V1_5_SHA_512",
}
_RSA_KEY_SPECS: Final = ("RSA_2048", "RSA_3072", "RSA_4096")
_CREATE_KEY_HINT: Final = (
    "Maskinporten needs an RSA signing key: aws kms create-key --key-spec RSA_2048 --key-usage SIGN_VERIFY"
)
_KEY_ID_FORMS: Final = "a KMS key id, key ARN, alias name (alias/<name>) or alias ARN"


def validate_key_id(value: object, field: str = "key_id") -> str:
    """Return ``value`` if it has the form of a KMS key reference, else raise ConfigurationError."""
    if not isinstance(value, str) or not value:
        raise ConfigurationError(field, f"must be {_KEY_ID_FORMS}, got {value!r}")
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        raise ConfigurationError(field, f"must not contain whitespace or control characters, got {value!r}")
    if value.startswith("arn:"):
        parts = value.split(":", 5)
        if len(parts) != 6 or parts[2] != "kms" or not parts[3] or not parts[5].startswith(("key/", "alias/")):
            raise ConfigurationError(field, f"is not a KMS key or alias ARN: {value!r}")
    elif value.startswith("alias/"):
        if value == "alias/":
            raise ConfigurationError(field, "the alias name after 'alias/' is missing")
    elif "/" in value:
        raise ConfigurationError(field, f"must be {_KEY_ID_FORMS}, got {value!r}")
    return value


def _arn_region(key_id: str) -> str | None:
    """The region an ARN names, or None for key ids and alias names."""
    return key_id.split(":")[3] if key_id.startswith("arn:") else None


def _check_client(client: object) -> None:
    service_model = getattr(getattr(client, "meta", None), "service_model", None)
    if getattr(service_model, "service_name", None) != "kms":
        raise ConfigurationError(
            "client", f"must be a boto3 KMS client (boto3.client('kms')), got {type(client).__name__}"
        )


class AwsKmsSigner(DigestSigner):
    """Signs Maskinporten grants with an asymmetric RSA key in AWS KMS.

    ``key_id`` is the key's id, ARN, alias name (``alias/maskinporten``) or alias ARN. The SHA-256/384/512 digest
    is computed here and KMS signs it (``MessageType=DIGEST``, RSASSA-PKCS1-v1_5), so a long ``x5c`` header never
    meets KMS's 4096-byte message limit.

    ``client`` is a boto3 KMS client; by default one is created on first use from boto3's default credential
    chain, in the ARN's region when ``key_id`` is an ARN. On first use the key is described (``kms:DescribeKey``):
    it must be RSA, usable for SIGN_VERIFY and offer the algorithm; an alias is resolved to its key then, and the
    signer keeps using that key even if the alias is later moved. ``public_jwk()`` comes from ``kms:GetPublicKey``
    (fetched once). With ``certificate_chain`` (PEM, leaf first), the grant carries ``x5c`` instead of ``kid`` and
    the leaf certificate must certify the KMS key.

    Every failure of KMS or of boto3 becomes :class:`~maskinporten_auth.errors.SigningError` with a hint.
    """

    backend = BACKEND

    def __init__(
        self,
        key_id: str,
        *,
        kid: str | None = None,
        algorithm: str = "RS256",
        client: KMSClient | None = None,
        certificate_chain: bytes | str | CertificateChain | None = None,
    ) -> None:
        super().__init__(kid=kid, algorithm=algorithm, certificate_chain=certificate_chain)
        self.key_id = validate_key_id(key_id)
        if client is not None:
            _check_client(client)
        self._client = client
        self._signing_algorithm = _SIGNING_ALGORITHMS[self.algorithm]
        self._metadata: KeyMetadataTypeDef | None = None
        self._setup_lock = threading.RLock()

    def _repr_fields(self) -> list[str]:
        """The key reference, then kid (or the number of certificates) and algorithm; nothing secret."""
        return [f"key_id={self.key_id!r}", *super()._repr_fields()]

    def _key_reference(self) -> str:
        """The key id, ARN or alias as configured."""
        return self.key_id

    def _kms(self) -> KMSClient:
        if self._client is None:
            with self._setup_lock:
                if self._client is None:
                    # A session of its own: boto3's default session is not safe to share between threads.
                    self._client = boto3.session.Session().client("kms", region_name=_arn_region(self.key_id))
        return self._client

    def _call(self, operation: Callable[[KMSClient], _T]) -> _T:
        try:
            return operation(self._kms())
        except ClientError as exc:
            region = self._client.meta.region_name if self._client is not None else None
            raise from_client_error(exc, key=self.key_id, region=region) from exc
        except BotoCoreError as exc:
            raise from_botocore_error(exc, key=self.key_id) from exc

    def _signing_key(self) -> KeyMetadataTypeDef:
        """Describe the key once, and return its metadata if it can sign with :attr:`algorithm`."""
        if self._metadata is None:
            with self._setup_lock:
                if self._metadata is None:
                    self._metadata = self._call(lambda kms: kms.describe_key(KeyId=self.key_id))["KeyMetadata"]
        metadata = self._metadata
        spec = metadata.get("KeySpec")
        usage = metadata.get("KeyUsage")
        offered = metadata.get("SigningAlgorithms", [])
        if usage != "SIGN_VERIFY":
            problem = f"key usage is {usage}; signing needs SIGN_VERIFY (the usage of a key cannot be changed)"
        elif spec not in _RSA_KEY_SPECS or self._signing_algorithm not in offered:
            problem = (
                f"key spec is {spec} with signing algorithms {', '.join(offered) or 'none'}; {self.algorithm} "
                f"needs {self._signing_algorithm} on an RSA key ({', '.join(_RSA_KEY_SPECS)})"
            )
        else:
            return metadata
        raise SigningError(problem, backend=BACKEND, key=self.key_id, hint=_CREATE_KEY_HINT)

    def _check_key(self) -> None:
        """Check with DescribeKey that the key is RSA, SIGN_VERIFY and offers the algorithm."""
        self._signing_key()

    def _fetch_public_key(self) -> rsa.RSAPublicKey:
        """Fetch the public key with GetPublicKey (DER SubjectPublicKeyInfo)."""
        arn = self._signing_key()["Arn"]
        der = self._call(lambda kms: kms.get_public_key(KeyId=arn))["PublicKey"]
        key = serialization.load_der_public_key(der)
        if not isinstance(key, rsa.RSAPublicKey):
            raise SigningError(
                f"GetPublicKey returned a {type(key).__name__}, not an RSA key",
                backend=BACKEND,
                key=self.key_id,
                hint=_CREATE_KEY_HINT,
            )
        return key

    def _sign_digest(self, digest: bytes) -> bytes:
        """Have KMS sign ``digest`` with RSASSA-PKCS1-v1_5 and the algorithm's hash."""
        arn = self._signing_key()["Arn"]
        response = self._call(
            lambda kms: kms.sign(
                KeyId=arn, Message=digest, MessageType="DIGEST", SigningAlgorithm=self._signing_algorithm
            )
        )
        return response["Signature"]
