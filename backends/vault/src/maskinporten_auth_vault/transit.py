"""A narrow, typed view of the Vault Transit calls this backend makes, with Vault's errors as SigningError.

Only two endpoints are used: ``GET <mount>/keys/<key>`` (the key's type and public keys) and
``POST <mount>/sign/<key>`` (a PKCS#1 v1.5 signature of a digest). Nothing here reads, enables or exports
private key material; the ``exportable`` flag is never touched.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import hvac  # type: ignore[import-untyped]
import hvac.exceptions  # type: ignore[import-untyped]
import requests

from maskinporten_auth.errors import SigningError

__all__ = ["BACKEND", "Signature", "TransitClient", "TransitKey", "policy"]

BACKEND: Final = "vault-transit"

_SIGNATURE: Final = re.compile(r"vault:v(?P<version>[1-9]\d*):(?P<value>[A-Za-z0-9+/]+={0,2})")
_MULTIERROR_HEADER: Final = re.compile(r"^\d+ errors? occurred:\s*")


@dataclass(frozen=True)
class TransitKey:
    """What ``read_key`` says about a Transit key: type, versions and public keys (never private material)."""

    type: str
    supports_signing: bool
    latest_version: int
    min_encryption_version: int
    public_keys: Mapping[int, str]
    """The PEM public key of each version Vault still holds, by version number."""


@dataclass(frozen=True)
class Signature:
    """A Transit signature: the key version that made it and the raw signature bytes."""

    version: int
    value: bytes


def policy(mount_point: str, key_name: str) -> str:
    """Return the least-privilege Vault policy (HCL) that lets a token use this key for signing."""
    return (
        f'path "{mount_point}/sign/{key_name}" {{ capabilities = ["update"] }}\n'
        f'path "{mount_point}/keys/{key_name}" {{ capabilities = ["read"] }}\n'
    )


def _vault_says(exc: Any) -> str:
    """Vault's own error text, with Go's ``1 error occurred: * ...`` wrapping removed."""
    texts = []
    for error in getattr(exc, "errors", None) or []:
        text = _MULTIERROR_HEADER.sub("", str(error).strip())
        texts.append(" ".join(text.replace("* ", "").split()))
    return "; ".join(text for text in texts if text)


def _address(url: str) -> str:
    """Return the Vault address without any user information, for messages."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    return f"{parts.scheme}://{host}:{parts.port}" if parts.port else f"{parts.scheme}://{host}"


def _parse_signature(text: object) -> Signature:
    """Parse Transit's ``vault:v<N>:<base64>`` signature."""
    found = _SIGNATURE.fullmatch(text) if isinstance(text, str) else None
    if found is None:
        raise ValueError("not a vault:v<N>:<base64> signature")
    try:
        value = base64.b64decode(found["value"], validate=True)
    except binascii.Error:
        raise ValueError("the signature is not valid base64") from None
    return Signature(int(found["version"]), value)


def _parse_key(data: Mapping[str, Any]) -> TransitKey:
    """Parse the ``data`` of a ``read_key`` answer, keeping only what signing needs."""
    public_keys: dict[int, str] = {}
    for version, entry in (data.get("keys") or {}).items():
        if isinstance(entry, Mapping) and isinstance(entry.get("public_key"), str) and entry["public_key"]:
            public_keys[int(version)] = entry["public_key"]
    return TransitKey(
        type=str(data.get("type", "")),
        supports_signing=data.get("supports_signing") is True,
        latest_version=int(data.get("latest_version", 0)),
        min_encryption_version=int(data.get("min_encryption_version") or 0),
        public_keys=public_keys,
    )


class TransitClient:
    """The Transit key ``<mount_point>/<key_name>``, reached through an hvac client.

    With ``client=None``, an ``hvac.Client`` is created on first use from ``VAULT_ADDR``, ``VAULT_TOKEN``
    (or the CLI's ``~/.vault-token``) and ``VAULT_NAMESPACE``; hvac also honours ``VAULT_CACERT``,
    ``VAULT_CAPATH`` and ``VAULT_CLIENT_CERT``/``VAULT_CLIENT_KEY``.
    """

    def __init__(self, client: Any | None, *, mount_point: str, key_name: str) -> None:
        self.mount_point = mount_point
        self.key_name = key_name
        self.path = f"{mount_point}/{key_name}"
        self._client = client
        self._client_lock = threading.Lock()

    def _hvac(self) -> Any:
        if self._client is None:
            with self._client_lock:
                if self._client is None:
                    self._client = hvac.Client(
                        url=os.environ.get("VAULT_ADDR") or None,
                        token=os.environ.get("VAULT_TOKEN") or None,
                        namespace=os.environ.get("VAULT_NAMESPACE") or None,
                    )
        return self._client

    def error(self, message: str, hint: str | None = None) -> SigningError:
        """Return a SigningError about this key."""
        return SigningError(message, backend=BACKEND, key=self.path, hint=hint)

    @contextlib.contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Turn hvac's and requests' exceptions during ``action`` into SigningError with a hint."""
        try:
            yield
        except hvac.exceptions.Forbidden as exc:
            raise self.error(
                f"Vault denied {action} ({_vault_says(exc) or 'permission denied'})",
                hint="the token must be valid (not expired or revoked) and have a policy with:\n"
                + policy(self.mount_point, self.key_name)
                + "and, with Vault namespaces, be used in the key's namespace (VAULT_NAMESPACE)",
            ) from exc
        except hvac.exceptions.InvalidPath as exc:
            raise self.error(
                f"Vault has no such Transit key ({_vault_says(exc) or 'not found'})",
                hint=f"create it with `vault write {self.mount_point}/keys/{self.key_name} type=rsa-3072`, "
                "or fix the key name, mount_point (the path Transit is enabled at) or VAULT_NAMESPACE",
            ) from exc
        except hvac.exceptions.VaultDown as exc:
            raise self.error(
                f"Vault is sealed or unavailable ({_vault_says(exc) or 'HTTP 503'})",
                hint="unseal Vault, or point VAULT_ADDR at an active node",
            ) from exc
        except hvac.exceptions.VaultError as exc:
            raise self.error(f"Vault refused {action}: {_vault_says(exc) or type(exc).__name__}") from exc
        except requests.RequestException as exc:
            address = _address(str(getattr(self._client, "url", "") or ""))
            raise self.error(
                f"cannot reach Vault at {address} when {action} ({type(exc).__name__})",
                hint="check VAULT_ADDR (or the hvac.Client's url), TLS settings and the network",
            ) from exc

    def read_key(self) -> TransitKey:
        """Read the key's type, versions and public keys (``GET <mount>/keys/<key>``)."""
        with self._errors("reading the key"):
            response = self._hvac().secrets.transit.read_key(name=self.key_name, mount_point=self.mount_point)
        data = response.get("data") if isinstance(response, Mapping) else None
        if not isinstance(data, Mapping):
            raise self.error("Vault's read_key answer has no key data")
        return _parse_key(data)

    def sign(self, digest: bytes, *, hash_algorithm: str, version: int) -> Signature:
        """Sign ``digest`` with PKCS#1 v1.5 and key version ``version`` (``POST <mount>/sign/<key>``)."""
        with self._errors(f"signing with version {version}"):
            response = self._hvac().secrets.transit.sign_data(
                name=self.key_name,
                hash_input=base64.b64encode(digest).decode("ascii"),
                hash_algorithm=hash_algorithm,
                prehashed=True,
                signature_algorithm="pkcs1v15",
                key_version=version,
                mount_point=self.mount_point,
            )
        data = response.get("data") if isinstance(response, Mapping) else None
        try:
            return _parse_signature(data.get("signature") if isinstance(data, Mapping) else None)
        except ValueError as exc:
            raise self.error(f"Vault's sign answer is unusable: {exc}") from None
