"""Maskinporten environments: where to send grants and what to put in ``aud``."""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, urlsplit

import httpx

from .errors import ConfigurationError, NetworkError

__all__ = ["PROD", "TEST", "Environment", "metadata_url", "resolve_environment"]


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def validate_url(value: object, field: str) -> str:
    """Return ``value`` if it is an absolute https URL (http only on loopback), else raise ConfigurationError."""
    if not isinstance(value, str) or not value:
        raise ConfigurationError(field, "must be a non-empty URL string")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number from 0 to 65535
        httpx.URL(value)  # what httpx would refuse at the first request, refused now
    except (ValueError, httpx.InvalidURL) as exc:
        raise ConfigurationError(field, f"is not a valid URL: {exc}") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigurationError(field, f"must be an absolute http(s) URL, got {value!r}")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ConfigurationError(field, f"must use https (plain http is allowed only on loopback), got {value!r}")
    if parts.username or parts.password:
        raise ConfigurationError(field, "must not contain credentials")
    return value


def metadata_url(issuer: str) -> str:
    """The URL of ``issuer``'s OAuth authorization-server metadata (RFC 8414 section 3)."""
    return issuer.rstrip("/") + "/.well-known/oauth-authorization-server"


@dataclass(frozen=True)
class Environment:
    """A Maskinporten environment.

    ``issuer`` is used verbatim as the grant's ``aud`` (mind the trailing slash); ``token_endpoint`` receives the
    grant; None reads it from the issuer's metadata (:meth:`discover`) at the first token request. Both must be
    https, except on loopback (the local emulator).
    """

    issuer: str
    token_endpoint: str | None = None
    jwks_uri: str | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        validate_url(self.issuer, "environment.issuer")
        if self.token_endpoint is not None:
            validate_url(self.token_endpoint, "environment.token_endpoint")
        if self.jwks_uri is not None:
            validate_url(self.jwks_uri, "environment.jwks_uri")

    @property
    def metadata_url(self) -> str:
        """Where the issuer publishes its authorization-server metadata (RFC 8414), which :meth:`discover` reads."""
        return metadata_url(self.issuer)

    def resolved(self, *, client: httpx.Client | None = None, timeout: float = 10.0) -> Environment:
        """Return the environment with its token endpoint: itself, or with what :meth:`discover` reads if none."""
        if self.token_endpoint is not None:
            return self
        found = self.discover(self.issuer, client=client, timeout=timeout)
        return dataclasses.replace(self, token_endpoint=found.token_endpoint, jwks_uri=found.jwks_uri)

    @classmethod
    def discover(cls, issuer: str, *, client: httpx.Client | None = None, timeout: float = 10.0) -> Environment:
        """Read ``issuer``'s well-known metadata and return the environment it describes.

        The metadata's ``issuer`` must equal ``issuer`` exactly, as RFC 8414 requires. Raises
        :class:`~maskinporten_auth.errors.NetworkError` when the metadata cannot be read, and
        :class:`~maskinporten_auth.errors.ConfigurationError` when it does not describe this issuer.
        """
        validate_url(issuer, "issuer")
        url = metadata_url(issuer)
        try:
            if client is None:
                with httpx.Client(timeout=timeout) as own:
                    response = own.get(url)
            else:
                response = client.get(url)
            response.raise_for_status()
            metadata: Any = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise NetworkError(f"could not read the issuer's metadata from {url}: {exc}") from exc
        if not isinstance(metadata, dict):
            raise ConfigurationError("issuer", f"metadata at {url} is not a JSON object")
        named = metadata.get("issuer")
        if named != issuer:
            slash = isinstance(named, str) and named.rstrip("/") == issuer.rstrip("/")
            hint = f" (hint: the trailing slash differs; use {named!r} exactly)" if slash else ""
            raise ConfigurationError("issuer", f"metadata at {url} names issuer {named!r}, expected {issuer!r}{hint}")
        token_endpoint = metadata.get("token_endpoint")
        if not isinstance(token_endpoint, str):
            raise ConfigurationError("issuer", f"metadata at {url} has no token_endpoint")
        jwks_uri = metadata.get("jwks_uri")
        if not isinstance(jwks_uri, str):
            jwks_uri = None
        return cls(issuer=issuer, token_endpoint=token_endpoint, jwks_uri=jwks_uri)


PROD = Environment(
    issuer="https://maskinporten.no/",
    token_endpoint="https://maskinporten.no/token",
    jwks_uri="https://maskinporten.no/jwk",
    name="prod",
)
TEST = Environment(
    issuer="https://test.maskinporten.no/",
    token_endpoint="https://test.maskinporten.no/token",
    jwks_uri="https://test.maskinporten.no/jwk",
    name="test",
)
_PRESETS = {"prod": PROD, "test": TEST}
#: The preset each of Maskinporten's issuer hosts stands for; a preset is looked up by name, when it is needed.
_PRESET_OF_HOST = {urlsplit(preset.issuer).netloc: name for name, preset in _PRESETS.items()}
#: Altinn's environments, which people give here for Maskinporten's (maskinporten-protocol.md §7: tt02 pairs with test).
_ALTINN_ENVIRONMENTS = frozenset({"tt02", "at21", "at22", "at23", "at24", "yt01"})
#: Maskinporten environments that no longer exist (maskinporten-protocol.md §1).
_RETIRED = frozenset({"ver1", "ver2", "yt2"})


def _split(value: str) -> SplitResult | None:
    try:
        return urlsplit(value)
    except ValueError:  # a URL too broken to split: validate_url says why, if it gets that far
        return None


def _preset_for_url(value: str) -> Environment | None:
    """The preset whose issuer ``value`` is, with or without the trailing slash and in any case of host."""
    parts = _split(value)
    if parts is None or parts.scheme.lower() != "https" or parts.query or parts.fragment:
        return None
    name = _PRESET_OF_HOST.get(parts.netloc.lower()) if parts.path in ("", "/") else None
    return None if name is None else _PRESETS[name]


def _misnamed(value: str) -> str | None:
    """What is wrong with an environment a person is likely to give by mistake, or None."""
    name = value.strip().rstrip("/")
    is_url = name.lower().startswith(("https://", "http://"))
    parts = _split(name)
    host = name.lower() if not is_url else (parts.hostname or "") if parts is not None else ""
    if name.lower() in _ALTINN_ENVIRONMENTS or "tt02" in host.split("."):
        return f"{value!r} is Altinn's test environment; Maskinporten's is 'test'"
    if name.lower() in _RETIRED:
        return f"{value!r} is a retired Maskinporten environment; use 'test'"
    if is_url and name.lower().endswith("/token"):
        issuer = name[: -len("token")]
        return f"{value!r} is the token endpoint; give the issuer ({issuer!r}) or 'test'/'prod'"
    return None


def resolve_environment(value: object, field: str = "environment") -> Environment:
    """Turn ``"test"``, ``"prod"``, an issuer URL or an :class:`Environment` into an Environment.

    Maskinporten's own issuers (``https://test.maskinporten.no/``, with or without the slash) are the presets;
    another issuer URL gets its token endpoint from its metadata at the first token request. No network I/O.
    """
    if isinstance(value, Environment):
        return value
    if isinstance(value, str):
        preset = _PRESETS.get(value.strip().lower()) or _preset_for_url(value.strip())
        if preset is not None:
            return preset
        problem = _misnamed(value)
        if problem is not None:
            raise ConfigurationError(field, problem)
        if value.startswith(("https://", "http://")):
            return Environment(issuer=validate_url(value, field))
        raise ConfigurationError(field, f"must be 'test', 'prod', an issuer URL or an Environment, got {value!r}")
    raise ConfigurationError(field, f"must be 'test', 'prod' or an Environment, got {type(value).__name__}")
