"""The signer abstraction: whatever holds the private key signs the grant, and never gives the key out.

:class:`Signer` is what the grant builder needs. :class:`DigestSigner` is the base of the remote backends (AWS KMS,
Vault Transit, Azure Key Vault): the digest is computed here and only the digest goes to the key service, so a long
``x5c`` header never hits a service's message-size limit.
"""

from __future__ import annotations

import abc
import hashlib
import threading
from typing import TYPE_CHECKING, Any, Final, Literal

from .errors import ConfigurationError
from .jwk import rsa_public_jwk

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import rsa

    from .certificates import CertificateChain

__all__ = [
    "ALGORITHMS",
    "MIN_RSA_BITS",
    "Algorithm",
    "DigestSigner",
    "Signer",
    "check_key_size",
    "digest",
    "refuse_kid_with_certificate",
    "validate_algorithm",
]

Algorithm = Literal["RS256", "RS384", "RS512"]
ALGORITHMS: Final = ("RS256", "RS384", "RS512")
MIN_RSA_BITS: Final = 2048

_HASHES: Final = {"RS256": hashlib.sha256, "RS384": hashlib.sha384, "RS512": hashlib.sha512}


def validate_algorithm(value: object, field: str = "algorithm") -> Algorithm:
    """Return ``value`` if Maskinporten accepts it as the grant's ``alg``, else raise ConfigurationError."""
    if value not in ALGORITHMS:
        raise ConfigurationError(field, f"must be one of {', '.join(ALGORITHMS)} (Maskinporten's only), got {value!r}")
    return value


def validate_kid(value: object, field: str = "kid") -> str | None:
    """Return ``value`` if it is None or a usable key id, else raise ConfigurationError."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(field, "must be a non-empty string")
    if value != value.strip() or any(ord(ch) < 32 for ch in value):
        raise ConfigurationError(field, "must not contain surrounding whitespace or control characters")
    return value


def check_key_size(key: rsa.RSAPublicKey | rsa.RSAPrivateKey, field: str, name: str = "the key") -> None:
    """Raise ConfigurationError naming ``field`` unless the RSA key has at least :data:`MIN_RSA_BITS` bits."""
    if key.key_size < MIN_RSA_BITS:
        raise ConfigurationError(
            field, f"{name} has {key.key_size} bits; at least {MIN_RSA_BITS} needed (Maskinporten's minimum)"
        )


def refuse_kid_with_certificate(kid: object, certificate: str = "certificate_chain") -> None:
    """Raise ConfigurationError naming ``kid`` if one is given for a key that is sent with its certificate (x5c).

    Maskinporten knows a key by exactly one of the two: a ``kid`` registered on the integration, or an enterprise
    certificate chain in ``x5c``. ``certificate`` says where the certificate comes from, for the message.
    """
    if kid is not None:
        raise ConfigurationError("kid", f"give either kid or {certificate} (x5c), not both")


def digest(algorithm: Algorithm, signing_input: bytes) -> bytes:
    """Return the hash of ``signing_input`` that ``algorithm`` signs (SHA-256, -384 or -512)."""
    return _HASHES[algorithm](signing_input).digest()


class Signer(abc.ABC):
    """Signs JWT grants with an RSA key it keeps to itself.

    A signer has ``algorithm`` (RS256, RS384 or RS512), ``kid`` (the key id registered on the integration) or
    ``x5c`` (the enterprise certificate chain), :meth:`sign` and :meth:`asign`, and gives its public key as a JWK.
    There is deliberately no way to get private key material out of a signer.
    """

    algorithm: Algorithm
    kid: str | None
    x5c: list[str] | None
    certificate_chain: CertificateChain | None = None

    def _configure(
        self, algorithm: object, kid: object, certificate_chain: bytes | str | CertificateChain | None
    ) -> None:
        """Set :attr:`algorithm` and how Maskinporten knows the key: ``kid``, or a certificate chain sent as x5c."""
        self.algorithm = validate_algorithm(algorithm)
        self.kid = validate_kid(kid)
        self.certificate_chain = None
        self.x5c = None
        if certificate_chain is not None:
            self._certify(certificate_chain)

    def _certify(self, certificate_chain: bytes | str | CertificateChain, source: str = "certificate_chain") -> None:
        """Send the key with ``certificate_chain`` as x5c (PEM, leaf first), instead of a kid."""
        from .certificates import CertificateChain  # x509 loads only for a signer that has a certificate chain

        refuse_kid_with_certificate(self.kid, source)
        if not isinstance(certificate_chain, CertificateChain):
            certificate_chain = CertificateChain.from_pem(certificate_chain)
        self.certificate_chain = certificate_chain
        self.x5c = certificate_chain.x5c

    def jose_header(self) -> dict[str, Any]:
        """The grant's JOSE header: ``alg``, and ``kid`` or ``x5c``, whichever tells Maskinporten the key.

        Raises ConfigurationError naming ``kid`` when the signer has neither.
        """
        if self.kid is not None:
            if self.x5c:
                refuse_kid_with_certificate(self.kid, "a certificate chain")
            return {"alg": self.algorithm, "kid": self.kid}
        if self.x5c:
            return {"alg": self.algorithm, "x5c": list(self.x5c)}
        raise ConfigurationError(
            "kid",
            "is missing, and there is no certificate chain (x5c): Maskinporten cannot tell which key signed; give "
            "the kid of the key registered on the integration",
        )

    @abc.abstractmethod
    def sign(self, signing_input: bytes) -> bytes:
        """Return the RSASSA-PKCS1-v1_5 signature of ``signing_input`` with :attr:`algorithm`'s hash."""

    async def asign(self, signing_input: bytes) -> bytes:
        """Sign without blocking the event loop (by default, :meth:`sign` in a worker thread)."""
        import asyncio

        return await asyncio.to_thread(self.sign, signing_input)

    @abc.abstractmethod
    def public_key(self) -> rsa.RSAPublicKey:
        """Return the RSA public key that verifies this signer's signatures."""

    def public_jwk(self) -> dict[str, Any]:
        """Return the public key as a JWK, ready to register on the Maskinporten integration."""
        return rsa_public_jwk(self.public_key(), kid=self.kid, alg=self.algorithm, x5c=self.x5c)

    @property
    def key_identity(self) -> str:
        """A stable identity of the key for cache keys, from configuration alone (never a call to a key service).

        By default the ``kid`` or the leaf certificate's digest; signers add what names their key (a key's ARN or
        URL, a file's thumbprint computed once).
        """
        return f"{type(self).__name__}:{self._registration()}"

    def _registration(self) -> str:
        """How Maskinporten knows the key: ``kid=...`` or the SHA-256 of the x5c leaf certificate."""
        if self.kid is not None:
            return f"kid={self.kid}"
        leaf = (self.x5c or [""])[0]
        return f"x5c={hashlib.sha256(leaf.encode('ascii')).hexdigest()}"

    def _repr_fields(self) -> list[str]:
        """The ``name=value`` pairs shown by repr; subclasses prepend what names their key (never a secret)."""
        shown = f"kid={self.kid!r}" if self.kid is not None else f"x5c=<{len(self.x5c or [])} certificates>"
        return [shown, f"algorithm={self.algorithm!r}"]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(self._repr_fields())})"


class DigestSigner(Signer):
    """Base of signers whose key lives in a remote service and signs a digest computed here.

    Subclasses implement :meth:`_fetch_public_key`, :meth:`_check_key` and :meth:`_sign_digest`. The public key is
    fetched once; on first use the key is checked (type, usage, algorithm) and, with ``certificate_chain``, matched
    against the leaf certificate. Errors from the service become :class:`~maskinporten_auth.errors.SigningError`.
    """

    backend: str = "remote"

    def __init__(
        self,
        *,
        kid: str | None = None,
        algorithm: str = "RS256",
        certificate_chain: bytes | str | CertificateChain | None = None,
    ) -> None:
        self._configure(algorithm, kid, certificate_chain)
        self._public_key: rsa.RSAPublicKey | None = None
        self._verified = threading.Event()
        self._lock = threading.RLock()  # _check_key may call public_key()

    @abc.abstractmethod
    def _fetch_public_key(self) -> rsa.RSAPublicKey:
        """Fetch the key's public half from the service (called once)."""

    def _check_key(self) -> None:
        """Check that the remote key can sign with :attr:`algorithm`; raise SigningError if not (called once)."""

    @abc.abstractmethod
    def _sign_digest(self, digest: bytes) -> bytes:
        """Have the service sign ``digest`` (PKCS#1 v1.5 with :attr:`algorithm`'s hash) and return the signature."""

    def public_key(self) -> rsa.RSAPublicKey:
        """Return the key's public half, fetched from the service once."""
        if self._public_key is None:
            with self._lock:
                if self._public_key is None:
                    key = self._fetch_public_key()
                    check_key_size(key, "key")
                    self._public_key = key
        return self._public_key

    def verify_key(self) -> None:
        """Check the remote key once: usable for :attr:`algorithm`, and matching the certificate chain if any."""
        if self._verified.is_set():
            return
        public_key = self.public_key()
        with self._lock:
            if self._verified.is_set():
                return
            self._check_key()
            if self.certificate_chain is not None:
                self.certificate_chain.check_key(public_key)
            self._verified.set()

    async def averify_key(self) -> None:
        """:meth:`verify_key` without blocking the event loop (the first call talks to the service)."""
        if not self._verified.is_set():
            import asyncio

            await asyncio.to_thread(self.verify_key)

    @property
    def key_identity(self) -> str:
        """What names the remote key (:meth:`_key_reference`) and how it is registered, from configuration."""
        return f"{self.backend}:{self._key_reference()}:{self._registration()}"

    @abc.abstractmethod
    def _key_reference(self) -> str:
        """The key's address in its service (ARN, URL, mount and name, pinned version), from configuration only."""

    def sign(self, signing_input: bytes) -> bytes:
        """Hash ``signing_input`` locally and have the service sign the digest."""
        self.verify_key()
        return self._sign_digest(digest(self.algorithm, signing_input))

    async def asign(self, signing_input: bytes) -> bytes:
        """Sign without blocking the event loop: the key check and the service call run in a worker thread."""
        import asyncio

        await self.averify_key()
        return await asyncio.to_thread(self._sign_digest, digest(self.algorithm, signing_input))
