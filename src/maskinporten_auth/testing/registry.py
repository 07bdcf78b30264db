"""What the emulator knows: integrations (clients) with their keys and certificates, and Altinn delegations."""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ..jwk import public_key_from_jwk
from ..orgnr import is_valid_orgno

__all__ = [
    "ClientKey",
    "KeyInput",
    "RegisteredClient",
    "Registry",
    "certificate_fingerprint",
    "load_certificate",
    "load_public_key",
]


@dataclass(frozen=True)
class ClientKey:
    """A public key registered on a client; after ``expires_at`` (emulator time) grants fail with MP-121."""

    public_key: rsa.RSAPublicKey
    expires_at: datetime.datetime | None = None

    def expired(self, now: float) -> bool:
        """Whether the key has expired at the POSIX time ``now``."""
        return self.expires_at is not None and self.expires_at.timestamp() <= now


KeyInput = bytes | str | rsa.RSAPublicKey | Mapping[str, Any] | ClientKey
"""What ``register_client(keys=...)`` accepts per kid: PEM, a ``cryptography`` RSA public key, a JWK, a ClientKey."""


def load_public_key(value: KeyInput) -> ClientKey:
    """Turn one ``keys`` value into a :class:`ClientKey`; raise ValueError for anything but an RSA public key."""
    if isinstance(value, ClientKey):
        return value
    if isinstance(value, rsa.RSAPublicKey):
        return ClientKey(value)
    if isinstance(value, Mapping):
        return ClientKey(public_key_from_jwk(dict(value)))
    pem = value.encode("ascii") if isinstance(value, str) else value
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError(f"only RSA public keys can be registered, got {type(key).__name__}")
    return ClientKey(key)


def load_certificate(value: x509.Certificate | bytes | str) -> x509.Certificate:
    """Turn a certificate given as an x509.Certificate or PEM into an x509.Certificate."""
    if isinstance(value, x509.Certificate):
        return value
    return x509.load_pem_x509_certificate(value.encode("ascii") if isinstance(value, str) else value)


def certificate_fingerprint(certificate: x509.Certificate) -> bytes:
    """The SHA-256 fingerprint that identifies a certificate."""
    return certificate.fingerprint(hashes.SHA256())


def _require_orgno(value: str, what: str) -> str:
    if not is_valid_orgno(value):
        raise ValueError(f"{what} must be a valid nine-digit organisation number, got {value!r}")
    return value


@dataclass(frozen=True)
class RegisteredClient:
    """An integration: its client id, owner organisation, scopes, keys by kid and trusted certificates."""

    client_id: str
    orgno: str
    scopes: frozenset[str]
    keys: Mapping[str, ClientKey] = field(default_factory=dict)
    certificates: Mapping[bytes, x509.Certificate] = field(default_factory=dict)


class Registry:
    """Clients and delegations. Not locked itself: the emulator serialises access."""

    def __init__(self) -> None:
        self.clients: dict[str, RegisteredClient] = {}
        self.delegations: set[tuple[str, str, str]] = set()

    def register_client(
        self,
        client_id: str,
        *,
        orgno: str,
        scopes: str | Iterable[str],
        keys: Mapping[str, KeyInput] | None = None,
        certificates: Iterable[x509.Certificate | bytes | str] | None = None,
    ) -> RegisteredClient:
        """Add or replace a client."""
        if not client_id:
            raise ValueError("client_id must not be empty")
        scope_set = frozenset(scopes.split() if isinstance(scopes, str) else scopes)
        trusted = (load_certificate(value) for value in certificates or ())
        client = RegisteredClient(
            client_id=client_id,
            orgno=_require_orgno(orgno, "orgno"),
            scopes=scope_set,
            keys={kid: load_public_key(key) for kid, key in (keys or {}).items()},
            certificates={certificate_fingerprint(cert): cert for cert in trusted},
        )
        self.clients[client_id] = client
        return client

    def delegate(self, consumer_org: str, supplier_org: str, scope: str) -> None:
        """Record that ``consumer_org`` delegated ``scope`` to ``supplier_org`` in Altinn."""
        _require_orgno(consumer_org, "consumer_org")
        _require_orgno(supplier_org, "supplier_org")
        self.delegations.add((consumer_org, supplier_org, scope))

    def has_delegated(self, consumer_org: str, supplier_org: str, scope: str) -> bool:
        """Whether ``consumer_org`` delegated ``scope`` to ``supplier_org``."""
        return (consumer_org, supplier_org, scope) in self.delegations

    def trusted_certificates(self) -> dict[bytes, x509.Certificate]:
        """Every certificate any client registered: the emulator's trust store for ``x5c`` chains."""
        return {fp: cert for client in self.clients.values() for fp, cert in client.certificates.items()}
