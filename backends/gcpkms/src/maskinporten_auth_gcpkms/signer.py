"""GcpKmsSigner: the grant is signed by an RSA key version in Google Cloud KMS; the private key never leaves KMS."""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from typing import Any, Final, NoReturn

import google_crc32c
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.api_core import exceptions as api_exceptions
from google.api_core import retry as api_retry
from google.cloud import kms

from maskinporten_auth import forksafe
from maskinporten_auth.certificates import CertificateChain
from maskinporten_auth.errors import ConfigurationError, SigningError
from maskinporten_auth.jwk import jwk_thumbprint
from maskinporten_auth.signer import ALGORITHMS, DigestSigner

from .errors import BACKEND, KmsIntegrityError, gcp_errors
from .names import KeyVersionName

__all__ = ["DEFAULT_TIMEOUT", "ENDPOINT_VARIABLE", "GcpKmsSigner"]

_LOGGER = logging.getLogger(__name__)

#: gcloud's endpoint override for Cloud KMS; the signer's own client honours it too (Private Service Connect, a
#: regional endpoint, a test server).
ENDPOINT_VARIABLE: Final = "CLOUDSDK_API_ENDPOINT_OVERRIDES_CLOUDKMS"

#: Seconds one Cloud KMS call may take; retries of an unavailable service stop after as long again.
DEFAULT_TIMEOUT: Final = 10.0

# Key version algorithms that sign RSASSA-PKCS1-v1_5 over a digest of one hash: the JWS algorithm they make.
_PKCS1_DIGEST: Final = {
    "RSA_SIGN_PKCS1_2048_SHA256": "RS256",
    "RSA_SIGN_PKCS1_3072_SHA256": "RS256",
    "RSA_SIGN_PKCS1_4096_SHA256": "RS256",
    "RSA_SIGN_PKCS1_4096_SHA512": "RS512",
}
# RSASSA-PKCS1-v1_5 without encoding: KMS pads what it is given, so the DigestInfo is built here, for any hash.
_PKCS1_RAW: Final = ("RSA_SIGN_RAW_PKCS1_2048", "RSA_SIGN_RAW_PKCS1_3072", "RSA_SIGN_RAW_PKCS1_4096")
# DER of DigestInfo up to the digest (RFC 8017, section 9.2, note 1).
_DIGEST_INFO_PREFIX: Final = {
    "RS256": bytes.fromhex("3031300d060960864801650304020105000420"),
    "RS384": bytes.fromhex("3041300d060960864801650304020205000430"),
    "RS512": bytes.fromhex("3051300d060960864801650304020305000440"),
}
_DIGEST_FIELD: Final = {"RS256": "sha256", "RS384": "sha384", "RS512": "sha512"}
_CLIENT_OPTIONS: Final = frozenset({"credentials", "transport", "client_options", "client_info"})
_RETRYABLE: Final = (api_exceptions.ServiceUnavailable, api_exceptions.DeadlineExceeded)
_CREATE_KEY_HINT: Final = (
    "create a key for Maskinporten: gcloud kms keys create <key> --keyring <key ring> --location <location> "
    "--purpose asymmetric-signing --default-algorithm rsa-sign-pkcs1-2048-sha256 --protection-level hsm "
    "(RS512: rsa-sign-pkcs1-4096-sha512; RS384: rsa-sign-raw-pkcs1-2048)"
)
_RETRY_HINT: Final = "Google asks clients to discard such an answer and try again; a later attempt usually succeeds"


def _signs(kms_algorithm: str) -> tuple[str, ...]:
    """The JWS algorithms (RS256, RS384, RS512) a key version with ``kms_algorithm`` can sign; the first is its own."""
    if kms_algorithm in _PKCS1_DIGEST:
        return (_PKCS1_DIGEST[kms_algorithm],)
    if kms_algorithm in _PKCS1_RAW:
        return ALGORITHMS
    return ()


def _key_algorithms_for(jws_algorithm: str) -> list[str]:
    """The key version algorithms that can sign ``jws_algorithm``, for messages."""
    return [kms_algorithm for kms_algorithm in (*_PKCS1_DIGEST, *_PKCS1_RAW) if jws_algorithm in _signs(kms_algorithm)]


def _why_not(kms_algorithm: str) -> str:
    """Why a key version with ``kms_algorithm`` cannot sign a Maskinporten grant."""
    if kms_algorithm.startswith("EC_SIGN_"):
        return f"{kms_algorithm} is an elliptic-curve key; Maskinporten takes RSA signatures only (RS256/RS384/RS512)"
    if kms_algorithm.startswith("RSA_SIGN_PSS_"):
        return f"{kms_algorithm} signs RSASSA-PSS; Maskinporten takes RSASSA-PKCS1-v1_5 only (RS256/RS384/RS512)"
    return f"{kms_algorithm} is not an RSA PKCS#1 v1.5 signing algorithm; Maskinporten takes RS256/RS384/RS512 only"


@dataclass(frozen=True)
class _KeyVersionInfo:
    """What ``getPublicKey`` said about the key version: its algorithm and, for an RSA key, its public key."""

    algorithm: str
    public_key: rsa.RSAPublicKey | None


class GcpKmsSigner(DigestSigner):
    """Signs Maskinporten grants with an RSA key version in Google Cloud KMS (software or HSM protection).

    ``key_version_name`` is the full name of the key version,
    ``projects/<p>/locations/<l>/keyRings/<r>/cryptoKeys/<k>/cryptoKeyVersions/<n>``: Cloud KMS signs with a
    version, and a version's key never changes, so the key Maskinporten has registered stays the one that signs.

    The signer needs only what ``roles/cloudkms.signerVerifier`` allows: ``getPublicKey`` (the public key and the
    version's algorithm) and ``asymmetricSign``. The public key is read once, when first needed; with
    ``algorithm`` or ``kid`` None that is at construction, and then the key is checked there too:

    - ``algorithm=None`` takes the version's own: RS256 for ``RSA_SIGN_PKCS1_*_SHA256``, RS512 for
      ``RSA_SIGN_PKCS1_4096_SHA512``, RS256 for ``RSA_SIGN_RAW_PKCS1_*`` (which sign RS384 and RS512 as well: the
      DigestInfo is built here). EC and PSS key versions are refused before anything is signed.
    - ``kid=None`` (without ``certificate_chain``) takes the key's RFC 7638 thumbprint, the kid that
      ``maskinporten jwk`` prints for it.

    The digest is computed here and sent with its CRC32C. An answer whose ``verified_digest_crc32c`` is false, whose
    ``name`` is not the version asked for, or whose ``signature_crc32c`` does not match the signature is refused
    with :class:`~maskinporten_auth_gcpkms.errors.KmsIntegrityError`, as Google documents; its signature is never
    used.

    ``client`` is a ``google.cloud.kms.KeyManagementServiceClient``, which stays the caller's. Without it the signer
    makes its own when first needed, REST transport, from Application Default Credentials; ``client_kwargs``
    (``credentials``, ``transport``, ``client_options``, ``client_info``) go to it, and a process forked after
    first use makes a new one instead of sharing the parent's connections. ``timeout`` (seconds) bounds each call
    to Cloud KMS, and the retries of an unavailable service as well. Errors from Google become
    :class:`~maskinporten_auth.errors.SigningError` with a hint; :meth:`asign` calls Cloud KMS in a worker thread.
    """

    backend = BACKEND

    def __init__(
        self,
        key_version_name: str,
        *,
        client: kms.KeyManagementServiceClient | None = None,
        kid: str | None = None,
        algorithm: str | None = None,
        certificate_chain: bytes | str | CertificateChain | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        **client_kwargs: Any,
    ) -> None:
        self._name = KeyVersionName.parse(key_version_name, field="key_version_name")
        _check_client(client, client_kwargs)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ConfigurationError("timeout", f"must be a positive number of seconds, got {timeout!r}")
        self._client = client
        self._owns_client = client is None
        self._client_kwargs = client_kwargs
        self._timeout = float(timeout)
        self._client_lock = threading.Lock()
        self._info: _KeyVersionInfo | None = None
        self._raw = False
        thumbprint_kid = kid is None and certificate_chain is None
        read_now = algorithm is None or thumbprint_kid
        if algorithm is None:
            algorithm = self._usable_algorithms()[0]
        super().__init__(kid=kid, algorithm=algorithm, certificate_chain=certificate_chain)
        if thumbprint_kid:
            self.kid = jwk_thumbprint(self.public_key())
        if read_now:  # getPublicKey has answered: refuse an unusable key now, not at the first grant
            self.verify_key()
        forksafe.register(self)

    @property
    def key_version_name(self) -> str:
        """The key version's full resource name."""
        return str(self._name)

    def _key_reference(self) -> str:
        """The key version's name, as configured (it names one key for good)."""
        return str(self._name)

    def _repr_fields(self) -> list[str]:
        """The key version, then kid (or the number of certificates) and algorithm; nothing secret."""
        return [f"key_version_name={str(self._name)!r}", *super()._repr_fields()]

    def close(self) -> None:
        """Close the client the signer made; a client passed in stays open, it belongs to the caller."""
        with self._client_lock:
            client = self._client if self._owns_client else None
            if self._owns_client:
                self._client = None
        if client is not None:
            client.transport.close()  # type: ignore[no-untyped-call]  # the generated transport is not annotated

    def _after_fork(self) -> None:
        """In a forked child: fresh locks, and a client of its own when next needed (the parent keeps its own)."""
        self._client_lock = threading.Lock()
        self._lock = threading.RLock()
        if self._owns_client:
            self._client = None

    # --- the key version, as getPublicKey describes it ----------------------------------------------------------

    def _kms(self) -> kms.KeyManagementServiceClient:
        with self._client_lock:
            if self._client is None:
                options = {"transport": "rest", **self._client_kwargs}
                endpoint = os.environ.get(ENDPOINT_VARIABLE, "").rstrip("/")
                if endpoint and "client_options" not in options:
                    options["client_options"] = {"api_endpoint": endpoint}
                with gcp_errors(self._name, "client setup"):
                    self._client = kms.KeyManagementServiceClient(**options)
            return self._client

    def _call_options(self) -> dict[str, Any]:
        retry = api_retry.Retry(
            predicate=api_retry.if_exception_type(*_RETRYABLE), initial=0.1, maximum=2.0, timeout=self._timeout
        )
        return {"retry": retry, "timeout": self._timeout}

    def _key_version(self) -> _KeyVersionInfo:
        """Read the algorithm and public key once (``getPublicKey``), the answer checked as Google documents."""
        if self._info is None:
            name = str(self._name)
            with gcp_errors(self._name, "getPublicKey"):
                answer = self._kms().get_public_key(request={"name": name}, **self._call_options())
            pem = answer.pem.encode("ascii")
            if answer.name and answer.name != name:
                self._integrity_failure(f"getPublicKey answered for another key version, {answer.name!r}")
            if answer.pem_crc32c is not None and answer.pem_crc32c != google_crc32c.value(pem):
                self._integrity_failure("the public key's CRC32C does not match it: the answer was corrupted")
            public_key = serialization.load_pem_public_key(pem)
            algorithm = kms.CryptoKeyVersion.CryptoKeyVersionAlgorithm(answer.algorithm).name
            self._info = _KeyVersionInfo(algorithm, public_key if isinstance(public_key, rsa.RSAPublicKey) else None)
            _LOGGER.debug("Cloud KMS key version %s has algorithm %s", name, algorithm)
        return self._info

    def _usable_algorithms(self) -> tuple[str, ...]:
        """The JWS algorithms the key version can sign, its own first; SigningError for EC, PSS and the rest."""
        info = self._key_version()
        algorithms = _signs(info.algorithm)
        if not algorithms or info.public_key is None:
            raise SigningError(_why_not(info.algorithm), backend=BACKEND, key=str(self._name), hint=_CREATE_KEY_HINT)
        return algorithms

    def _fetch_public_key(self) -> rsa.RSAPublicKey:
        """The public key from ``getPublicKey`` (PEM), read once; only an RSA PKCS#1 key version gets this far."""
        self._usable_algorithms()
        public_key = self._key_version().public_key
        assert public_key is not None  # _usable_algorithms refuses key versions without one
        return public_key

    def _check_key(self) -> None:
        """The key version must sign :attr:`algorithm`; remember whether it takes a digest or a DigestInfo."""
        algorithms = self._usable_algorithms()
        kms_algorithm = self._key_version().algorithm
        if self.algorithm not in algorithms:
            raise SigningError(
                f"{kms_algorithm} signs {', '.join(algorithms)}, not {self.algorithm}",
                backend=BACKEND,
                key=str(self._name),
                hint=(
                    f"leave algorithm unset to sign with the key version's own, or use a key version whose "
                    f"algorithm signs {self.algorithm}: {', '.join(_key_algorithms_for(self.algorithm))}"
                ),
            )
        self._raw = kms_algorithm in _PKCS1_RAW

    # --- signing -------------------------------------------------------------------------------------------------

    def _sign_digest(self, digest: bytes) -> bytes:
        """Have Cloud KMS sign ``digest`` (or, for a RAW key, its DigestInfo) and check the answer."""
        name = str(self._name)
        request: dict[str, Any] = {"name": name}
        if self._raw:
            data = _DIGEST_INFO_PREFIX[self.algorithm] + digest
            request.update(data=data, data_crc32c=google_crc32c.value(data))
        else:
            request.update(digest={_DIGEST_FIELD[self.algorithm]: digest}, digest_crc32c=google_crc32c.value(digest))
        with gcp_errors(self._name, "asymmetricSign"):
            answer = self._kms().asymmetric_sign(request=request, **self._call_options())
        signature = bytes(answer.signature)
        if not (answer.verified_data_crc32c if self._raw else answer.verified_digest_crc32c):
            checked = "data" if self._raw else "digest"
            self._integrity_failure(f"Cloud KMS did not confirm the {checked} CRC32C (verified_{checked}_crc32c false)")
        if answer.name != name:
            self._integrity_failure(f"Cloud KMS signed with {answer.name or 'an unnamed key version'!r}, not this one")
        if answer.signature_crc32c != google_crc32c.value(signature):
            self._integrity_failure("the signature's CRC32C does not match the signature: it was corrupted on the way")
        return signature

    def _integrity_failure(self, problem: str) -> NoReturn:
        raise KmsIntegrityError(problem, backend=BACKEND, key=str(self._name), hint=_RETRY_HINT)


def _check_client(client: object, client_kwargs: dict[str, Any]) -> None:
    """A client must be a KeyManagementServiceClient; client options are for the signer's own client only."""
    if client is not None and not isinstance(client, kms.KeyManagementServiceClient):
        raise ConfigurationError(
            "client", f"must be a google.cloud.kms.KeyManagementServiceClient, got {type(client).__name__}"
        )
    unknown = sorted(set(client_kwargs) - _CLIENT_OPTIONS)
    if unknown:
        raise ConfigurationError(unknown[0], f"is not a client option ({', '.join(sorted(_CLIENT_OPTIONS))})")
    if client is not None and client_kwargs:
        raise ConfigurationError(next(iter(client_kwargs)), "configures the signer's own client: not with client=")
