"""The key URI ``vault-transit://<mount>/<key>[?version=N]`` (entry point group maskinporten_auth.signers)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from maskinporten_auth.certificates import CertificateChain
from maskinporten_auth.errors import ConfigurationError

from .signer import VaultTransitSigner

__all__ = ["signer_from_uri"]

_FORM = "vault-transit://<mount>/<key>[?version=N]"


def _version(query: str, uri: str) -> int | None:
    try:
        params = parse_qs(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise ConfigurationError("key", f"has a malformed query in {uri!r}; expected {_FORM}") from None
    unknown = sorted(set(params) - {"version"})
    if unknown:
        raise ConfigurationError("key", f"unknown parameter {unknown[0]!r} in {uri!r}; expected {_FORM}")
    values = params.get("version")
    if values is None:
        return None
    if len(values) != 1 or not values[0].isdigit() or int(values[0]) < 1:
        raise ConfigurationError("key", f"version must be one positive integer in {uri!r}")
    return int(values[0])


def signer_from_uri(
    uri: str,
    *,
    kid: str | None = None,
    algorithm: str = "RS256",
    client: Any | None = None,
    certificate_chain: bytes | str | CertificateChain | None = None,
) -> VaultTransitSigner:
    """Return the signer for ``vault-transit://<mount>/<key>[?version=N]``.

    The mount may have several segments: ``vault-transit://teams/a/transit/maskinporten`` is the key
    ``maskinporten`` in the Transit engine at ``teams/a/transit``. Without ``version``, the latest version is
    pinned at first use. The Vault client is ``client`` or, by default, one from ``VAULT_ADDR``,
    ``VAULT_TOKEN`` and ``VAULT_NAMESPACE``.
    """
    parts = urlsplit(uri)
    segments = [unquote(segment) for segment in f"{parts.netloc}{parts.path}".split("/")]
    if (
        parts.scheme != "vault-transit"
        or parts.fragment
        or "@" in parts.netloc
        or ":" in parts.netloc
        or len(segments) < 2
        or not all(segments)
    ):
        raise ConfigurationError("key", f"expected {_FORM}, got {uri!r}")
    return VaultTransitSigner(
        segments[-1],
        mount_point="/".join(segments[:-1]),
        key_version=_version(parts.query, uri),
        kid=kid,
        algorithm=algorithm,
        client=client,
        certificate_chain=certificate_chain,
    )
