"""LocalKeySigner: an RSA private key held in this process (PEM, private JWK or PKCS#12 file)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from .errors import ConfigurationError
from .jwk import b64url_decode, jwk_thumbprint
from .jws import RSA_ALGORITHMS
from .signer import Signer, check_key_size, refuse_kid_with_certificate

if TYPE_CHECKING:
    from .certificates import CertificateChain

__all__ = ["LocalKeySigner"]


def _check_rsa(key: object, field: str) -> rsa.RSAPrivateKey:
    if not isinstance(key, rsa.RSAPrivateKey):
        kind = type(key).__name__.lstrip("_")
        raise ConfigurationError(field, f"Maskinporten needs an RSA key, got {kind}")
    check_key_size(key, field, "the RSA key")
    return key


def _password_bytes(password: bytes | str | None) -> bytes | None:
    return password.encode("utf-8") if isinstance(password, str) else password


def read_file(path: str | os.PathLike[str], field: str) -> bytes:
    """Return the file's bytes, or raise ConfigurationError naming ``field`` when it cannot be read."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigurationError(field, f"cannot read {os.fspath(path)!r}: {exc.strerror}") from None
    except ValueError:  # a NUL byte in the path
        raise ConfigurationError(field, f"is not a usable file path: {os.fspath(path)!r}") from None


class LocalKeySigner(Signer):
    """Signs with an RSA private key held in memory.

    Use one of the constructors: :meth:`from_pem_file`, :meth:`from_pem`, :meth:`from_jwk`, :meth:`from_jwk_file`,
    :meth:`from_pkcs12_file` or :meth:`from_pkcs12`. The key must be RSA with at least 2048 bits. With a certificate
    chain (a virksomhetssertifikat), the grant carries ``x5c`` instead of ``kid``.
    """

    backend = "local"

    def __init__(
        self,
        private_key: rsa.RSAPrivateKey,
        *,
        kid: str | None = None,
        algorithm: str = "RS256",
        certificate_chain: CertificateChain | bytes | str | None = None,
    ) -> None:
        self._private_key = _check_rsa(private_key, "private_key")
        self._configure(algorithm, kid, certificate_chain)
        if self.certificate_chain is not None:
            self.certificate_chain.check_key(self._private_key.public_key())
        self._hash = RSA_ALGORITHMS[self.algorithm]()
        self._thumbprint = jwk_thumbprint(self._private_key.public_key())

    @property
    def key_identity(self) -> str:
        """The key's JWK thumbprint (computed once, at construction) and its kid or certificate."""
        return f"local:{self._thumbprint}:{self._registration()}"

    @classmethod
    def from_pem(
        cls,
        data: bytes | str,
        *,
        kid: str | None = None,
        password: bytes | str | None = None,
        algorithm: str = "RS256",
        certificate_chain: CertificateChain | bytes | str | None = None,
    ) -> LocalKeySigner:
        """Load a PEM private key: PKCS#1 (``BEGIN RSA PRIVATE KEY``) or PKCS#8, encrypted with ``password``."""
        raw = data.encode("ascii") if isinstance(data, str) else data
        secret = _password_bytes(password)
        try:
            key = serialization.load_pem_private_key(raw, password=secret)
        except TypeError:
            if secret is None:
                raise ConfigurationError("password", "the PEM key is encrypted; a password is required") from None
            raise ConfigurationError("password", "was given, but the PEM key is not encrypted") from None
        except ValueError:
            if secret is not None:
                raise ConfigurationError("password", "is wrong, or the PEM key data is corrupt") from None
            raise ConfigurationError("key", "is not a PEM private key") from None
        except UnsupportedAlgorithm as exc:
            raise ConfigurationError("key", f"uses an unsupported algorithm: {exc}") from None
        return cls(_check_rsa(key, "key"), kid=kid, algorithm=algorithm, certificate_chain=certificate_chain)

    @classmethod
    def from_pem_file(
        cls,
        path: str | os.PathLike[str],
        *,
        kid: str | None = None,
        password: bytes | str | None = None,
        algorithm: str = "RS256",
        certificate_chain: CertificateChain | bytes | str | None = None,
    ) -> LocalKeySigner:
        """Load a PEM private key from ``path``; see :meth:`from_pem`."""
        return cls.from_pem(
            read_file(path, "key"), kid=kid, password=password, algorithm=algorithm, certificate_chain=certificate_chain
        )

    @classmethod
    def from_jwk(
        cls, jwk: Mapping[str, Any] | str | bytes, *, kid: str | None = None, algorithm: str | None = None
    ) -> LocalKeySigner:
        """Load a private RSA JWK, as web key generators (mkjwk and the like) print it.

        A JWK set with a single key is accepted too. ``kid`` and ``alg`` are taken from the JWK unless given.
        """
        if isinstance(jwk, (str, bytes)):
            try:
                jwk = json.loads(jwk)
            except ValueError:
                raise ConfigurationError("jwk", "is not valid JSON") from None
        if not isinstance(jwk, Mapping):
            raise ConfigurationError("jwk", "must be a JSON object")
        if "keys" in jwk:
            keys = jwk["keys"]
            if not isinstance(keys, list) or len(keys) != 1 or not isinstance(keys[0], Mapping):
                raise ConfigurationError("jwk", "a JWK set must hold exactly one key")
            jwk = keys[0]
        if jwk.get("kty") != "RSA":
            raise ConfigurationError("jwk", f"Maskinporten needs an RSA key, got kty={jwk.get('kty')!r}")
        members = ("n", "e", "d", "p", "q", "dp", "dq", "qi")
        missing = [name for name in members if not isinstance(jwk.get(name), str)]
        if "d" in missing:
            raise ConfigurationError("jwk", "is a public key; the private JWK (with 'd') is needed to sign")
        if missing:
            raise ConfigurationError("jwk", f"lacks the private RSA members {', '.join(missing)}")
        try:
            n, e, d, p, q, dp, dq, qi = (int.from_bytes(b64url_decode(jwk[name]), "big") for name in members)
            key = rsa.RSAPrivateNumbers(p, q, d, dp, dq, qi, rsa.RSAPublicNumbers(e, n)).private_key()
        except ValueError:
            raise ConfigurationError("jwk", "holds an invalid RSA key") from None
        return cls(
            _check_rsa(key, "jwk"),
            kid=kid if kid is not None else jwk.get("kid"),
            algorithm=algorithm or jwk.get("alg") or "RS256",
        )

    @classmethod
    def from_jwk_file(
        cls, path: str | os.PathLike[str], *, kid: str | None = None, algorithm: str | None = None
    ) -> LocalKeySigner:
        """Load a private RSA JWK from a JSON file; see :meth:`from_jwk`."""
        return cls.from_jwk(read_file(path, "jwk"), kid=kid, algorithm=algorithm)

    @classmethod
    def from_pkcs12(cls, data: bytes, *, password: bytes | str | None, algorithm: str = "RS256") -> LocalKeySigner:
        """Load a PKCS#12 bundle (a virksomhetssertifikat): key, certificate and chain, sent as ``x5c``."""
        from cryptography.hazmat.primitives.serialization import pkcs12  # x509 loads only for certificates

        from .certificates import CertificateChain

        secret = _password_bytes(password)
        try:
            key, certificate, extra = pkcs12.load_key_and_certificates(data, secret)
        except ValueError:
            if not secret:
                raise ConfigurationError("password", "the PKCS#12 file is protected; a password is required") from None
            raise ConfigurationError("password", "is wrong, or the PKCS#12 data is corrupt") from None
        if key is None:
            raise ConfigurationError("pkcs12", "holds no private key")
        if certificate is None:
            raise ConfigurationError("pkcs12", "holds no certificate for its key")
        rsa_key = _check_rsa(key, "pkcs12")
        chain = CertificateChain.of_leaf(certificate, pool=extra, field="pkcs12")
        return cls(rsa_key, algorithm=algorithm, certificate_chain=chain)

    @classmethod
    def from_pkcs12_file(
        cls, path: str | os.PathLike[str], *, password: bytes | str | None, algorithm: str = "RS256"
    ) -> LocalKeySigner:
        """Load a PKCS#12 file (``.p12``/``.pfx``); see :meth:`from_pkcs12`."""
        return cls.from_pkcs12(read_file(path, "pkcs12"), password=password, algorithm=algorithm)

    def sign(self, signing_input: bytes) -> bytes:
        """Sign with RSASSA-PKCS1-v1_5 and the algorithm's hash."""
        return self._private_key.sign(signing_input, padding.PKCS1v15(), self._hash)

    async def asign(self, signing_input: bytes) -> bytes:
        """Sign in the calling thread: a local RSA signature takes about a millisecond."""
        return self.sign(signing_input)

    def public_key(self) -> rsa.RSAPublicKey:
        """Return the public half of the key."""
        return self._private_key.public_key()


def _path_of(uri: str, scheme: str) -> str:
    parts = urlsplit(uri)
    if parts.scheme != scheme or parts.netloc not in ("", "localhost") or not parts.path:
        raise ConfigurationError("key", f"expected {scheme}:///absolute/path, got {uri!r}")
    return unquote(parts.path)


def signer_from_file_uri(
    uri: str, *, kid: str | None = None, algorithm: str = "RS256", password: bytes | str | None = None
) -> LocalKeySigner:
    """Entry point for ``file:///path``: a PEM key, or a private JWK if the file holds JSON."""
    path = _path_of(uri, "file")
    data = read_file(path, "key")
    if data.lstrip().startswith(b"{"):
        return LocalKeySigner.from_jwk(data, kid=kid, algorithm=algorithm)
    return LocalKeySigner.from_pem(data, kid=kid, password=password, algorithm=algorithm)


def signer_from_pkcs12_uri(
    uri: str, *, kid: str | None = None, algorithm: str = "RS256", password: bytes | str | None = None
) -> LocalKeySigner:
    """Entry point for ``pkcs12:///path``: a PKCS#12 enterprise certificate, sent as ``x5c``."""
    refuse_kid_with_certificate(kid, "the PKCS#12 file's certificate")
    return LocalKeySigner.from_pkcs12_file(_path_of(uri, "pkcs12"), password=password, algorithm=algorithm)
