"""Tokens at rest: entry names and values that reveal nothing without the operator's key.

From the operator's 32-byte key, HKDF derives two keys: one names entries (an HMAC of the cache key, itself a
digest of the whole configuration), one seals their values (AES-256-GCM, the entry's name as associated data, so a
value copied under another name does not open). Without a key (the insecure opt-out) names are plain SHA-256
digests and values are plain JSON.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import os
import time
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from maskinporten_auth import ConfigurationError
from maskinporten_auth.cache import CachedToken

__all__ = ["KEY_BYTES", "Sealer", "new_encryption_key", "parse_encryption_key"]

KEY_BYTES = 32
_SEALED = b"\x01"  # format byte: AES-256-GCM, 12-byte nonce
_PLAIN = b"\x00"  # format byte: JSON in clear (insecure_no_encryption)
_NONCE_BYTES = 12
#: An entry claiming to live longer than this is not believed (Maskinporten tokens live minutes to hours).
_MAX_LIFETIME = 86_400.0
#: How far ahead of this host's clock another host's "renewed at" may be (clocks of a fleet differ a little).
_CLOCK_SKEW = 5.0
_SCHEDULE = ("refresh_at", "must_refresh_at", "expires_at")
_GENERATE = "python -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())'"


def new_encryption_key() -> str:
    """Return a new random encryption key, base64 encoded (for ``MASKINPORTEN_CACHE_KEY`` or a key file)."""
    return base64.b64encode(os.urandom(KEY_BYTES)).decode("ascii")


def parse_encryption_key(value: object, field: str = "encryption_key") -> bytes:
    """Return the 32-byte key ``value`` holds: 32 raw bytes, or their base64 (standard or URL-safe) as str or bytes.

    The error names ``field`` and never repeats the value.
    """
    problem = f"must be {KEY_BYTES} random bytes or their base64; generate one with: {_GENERATE}"
    if isinstance(value, (bytes, bytearray)) and len(value) == KEY_BYTES:
        return bytes(value)
    if isinstance(value, (bytes, bytearray)):
        try:
            value = bytes(value).decode("ascii")
        except UnicodeDecodeError:
            raise ConfigurationError(field, problem) from None
    if not isinstance(value, str):
        raise ConfigurationError(field, f"{problem} (got a {type(value).__name__})")
    text = "".join(value.split()).replace("-", "+").replace("_", "/")
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigurationError(field, problem) from None
    if len(key) != KEY_BYTES:
        raise ConfigurationError(field, f"{problem} (it decodes to {len(key)} bytes)")
    return key


def _derive(key: bytes, purpose: bytes) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=b"maskinporten-auth-redis/v1/" + purpose)
    return hkdf.derive(key)


def _wall_offset() -> float:
    """Wall-clock time (shared by processes) minus this process's monotonic time."""
    return time.time() - time.monotonic()


class Sealer:
    """Names and seals the entries of one encryption key (or of none: ``key=None`` stores tokens in clear).

    ``generation`` is a short digest that tells entries of different keys apart (never the key itself).
    """

    def __init__(self, key: bytes | None) -> None:
        self.encrypted = key is not None
        if key is None:
            self._name_key: bytes | None = None
            self._aead: AESGCM | None = None
            self.generation = "plain"
        else:
            self._name_key = _derive(key, b"names")
            self._aead = AESGCM(_derive(key, b"values"))
            self.generation = hmac.new(self._name_key, b"generation", hashlib.sha256).hexdigest()[:12]

    def name(self, cache_key: str) -> str:
        """The digest an entry for ``cache_key`` is stored under: keyed by the encryption key when there is one."""
        data = cache_key.encode("utf-8")
        if self._name_key is None:
            return hashlib.sha256(data).hexdigest()
        return hmac.new(self._name_key, data, hashlib.sha256).hexdigest()

    def seal(self, name: str, token: CachedToken) -> tuple[bytes, int]:
        """The stored form of ``token`` under ``name`` and its time to live in milliseconds (0: already expired)."""
        offset = _wall_offset()
        document = {
            "token": token.value,
            "expires_at": token.expires_at + offset,
            "refresh_at": token.refresh_at + offset,
            "must_refresh_at": token.must_refresh_at + offset,
        }
        if token.renewed_at is not None:
            document["renewed_at"] = token.renewed_at + offset
        plain = json.dumps(document, separators=(",", ":")).encode("utf-8")
        ttl_ms = max(0, int((token.expires_at - time.monotonic()) * 1000))
        if self._aead is None:
            return _PLAIN + plain, ttl_ms
        nonce = os.urandom(_NONCE_BYTES)
        return _SEALED + nonce + self._aead.encrypt(nonce, plain, name.encode("ascii")), ttl_ms

    def open(self, name: str, blob: bytes) -> CachedToken:
        """The token ``blob`` holds under ``name``; ValueError (saying why, never what) when it cannot be trusted."""
        if self._aead is None:
            if not blob.startswith(_PLAIN):
                raise ValueError("not an entry in clear")
            plain = blob[1:]
        else:
            if not blob.startswith(_SEALED) or len(blob) < 1 + _NONCE_BYTES + 16:
                raise ValueError("not a sealed entry")
            nonce, sealed = blob[1 : 1 + _NONCE_BYTES], blob[1 + _NONCE_BYTES :]
            try:
                plain = self._aead.decrypt(nonce, sealed, name.encode("ascii"))
            except InvalidTag:
                raise ValueError("does not open with this encryption key (another key, or tampered with)") from None
        return _token(plain)


def _token(plain: bytes) -> CachedToken:
    try:
        document: Any = json.loads(plain)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError("not JSON") from None
    if not isinstance(document, dict):
        raise ValueError("not a JSON object")
    value = document.get("token")
    if not isinstance(value, str) or not value or not value.isascii() or not value.isprintable() or " " in value:
        raise ValueError("no usable token")
    refresh_at, must_refresh_at, expires_at = (_moment(document, field) for field in _SCHEDULE)
    if not refresh_at <= must_refresh_at <= expires_at or expires_at - time.time() > _MAX_LIFETIME:
        raise ValueError("times out of order or too far ahead")
    renewed_at = None
    if document.get("renewed_at") is not None:  # absent from the entries 0.1.x wrote
        renewed_at = _moment(document, "renewed_at")
        if renewed_at - time.time() > _CLOCK_SKEW:
            raise ValueError("renewal time in the future")
    offset = _wall_offset()
    return CachedToken(
        value=value,
        expires_at=expires_at - offset,
        refresh_at=refresh_at - offset,
        must_refresh_at=must_refresh_at - offset,
        renewed_at=None if renewed_at is None else renewed_at - offset,
    )


def _moment(document: dict[str, Any], field: str) -> float:
    """The wall-clock time ``document`` holds under ``field``; ValueError unless it is a finite number."""
    moment = document.get(field)
    if not isinstance(moment, (int, float)) or isinstance(moment, bool) or not math.isfinite(moment):
        raise ValueError("times missing or not numbers")
    return float(moment)
