"""Key URIs (``file:``, ``awskms:``, ``vault-transit:``, ``gcpkms:``, ...) resolved through entry points.

Each key backend registers a factory in the ``maskinporten_auth.signers`` entry-point group under its URI scheme.
A factory is called as ``factory(uri, kid=..., **options)`` (``algorithm=`` among the options when one is given; a
backend's own default otherwise) and returns a :class:`~maskinporten_auth.signer.Signer`.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any
from urllib.parse import urlsplit

from .errors import ConfigurationError
from .signer import Signer

__all__ = ["ENTRY_POINT_GROUP", "signer_from_uri"]

ENTRY_POINT_GROUP = "maskinporten_auth.signers"

_PACKAGES = {
    "file": "maskinporten-auth",
    "pkcs12": "maskinporten-auth",
    "awskms": "maskinporten-auth[aws-kms]",
    "vault-transit": "maskinporten-auth[vault]",
    "azurekv": "maskinporten-auth[azure]",
    "gcpkms": "maskinporten-auth[gcp-kms]",
    "pkcs11": "maskinporten-auth[pkcs11]",
}


def _factory(scheme: str) -> Callable[..., Signer]:
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        if entry_point.name == scheme:
            factory: Callable[..., Signer] = entry_point.load()
            return factory
    package = _PACKAGES.get(scheme)
    if package is None:
        known = ", ".join(f"{name}:" for name in _PACKAGES)
        raise ConfigurationError("key", f"unknown key URI scheme {scheme + ':'!r}; known schemes are {known}")
    raise ConfigurationError("key", f"the {scheme}: backend is not installed; pip install '{package}'")


def signer_from_uri(uri: str, *, kid: str | None = None, algorithm: str | None = None, **options: Any) -> Signer:
    """Return the signer a key URI names, e.g. ``vault-transit://transit/maskinporten?version=2``.

    ``algorithm`` None leaves it to the backend: RS256, or the key's own where the key service knows it (Google
    Cloud KMS). ``options`` (such as ``password`` for local keys) are passed on to the backend's factory; options
    that are None are left out.
    """
    if not isinstance(uri, str) or ":" not in uri:
        raise ConfigurationError("key", f"must be a key URI such as file:///path/key.pem, got {uri!r}")
    try:
        scheme = urlsplit(uri).scheme.lower()
    except ValueError as exc:  # e.g. an unclosed "[" in the host
        raise ConfigurationError("key", f"is not a valid key URI: {exc}") from None
    given = {name: value for name, value in {**options, "algorithm": algorithm}.items() if value is not None}
    return _factory(scheme)(uri, kid=kid, **given)
