"""Configuration from environment variables: ``MASKINPORTEN_ENV``, ``MASKINPORTEN_CLIENT_ID`` and the rest.

:class:`EnvConfig` reads them one setting at a time, which is how ``maskinporten doctor`` checks a configuration
step by step, and :meth:`MaskinportenAuth.from_env <maskinporten_auth.auth.MaskinportenAuth.from_env>` builds an
auth from all of them. Every :class:`~maskinporten_auth.errors.ConfigurationError` raised here names the variable
at fault in ``field``; the values' rules are those of the settings they feed (:mod:`maskinporten_auth.grant` for
the claims, :mod:`maskinporten_auth.signer` for the key).

Variables (with the default prefix): ``MASKINPORTEN_ENV`` (``test``, the default, ``prod`` or an issuer
URL), ``MASKINPORTEN_CLIENT_ID``, ``MASKINPORTEN_SCOPES`` (spaces or commas between scopes),
``MASKINPORTEN_KEY`` (a key URI, or the path of a local key file), ``MASKINPORTEN_KID``,
``MASKINPORTEN_KEY_PASSWORD`` or ``MASKINPORTEN_KEY_PASSWORD_FILE``, ``MASKINPORTEN_CONSUMER_ORG``,
``MASKINPORTEN_RESOURCE``, and for a token cache shared by a fleet of processes ``MASKINPORTEN_CACHE_URL``
(``redis://``, ``rediss://`` or ``unix://``, resolved through the ``maskinporten_auth.caches`` entry points) with
``MASKINPORTEN_CACHE_KEY`` (base64) or ``MASKINPORTEN_CACHE_KEY_FILE``. An empty optional variable counts as unset.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .errors import ConfigurationError, SigningError
from .grant import validate_client_id, validate_resource, validate_scopes
from .orgnr import validate_orgno

if TYPE_CHECKING:
    from .cache import TokenStore
    from .environment import Environment
    from .signer import Signer

__all__ = ["CACHE_ENTRY_POINT_GROUP", "DEFAULT_PREFIX", "EnvConfig", "key_uri"]

DEFAULT_PREFIX = "MASKINPORTEN_"

ENV = "ENV"
CLIENT_ID = "CLIENT_ID"
SCOPES = "SCOPES"
KEY = "KEY"
KID = "KID"
KEY_PASSWORD = "KEY_PASSWORD"
KEY_PASSWORD_FILE = "KEY_PASSWORD_FILE"
CONSUMER_ORG = "CONSUMER_ORG"
RESOURCE = "RESOURCE"
CACHE_URL = "CACHE_URL"
CACHE_KEY = "CACHE_KEY"
CACHE_KEY_FILE = "CACHE_KEY_FILE"

#: Every variable suffix :class:`EnvConfig` reads, in the order a person sets them.
VARIABLES = (
    ENV,
    CLIENT_ID,
    SCOPES,
    KEY,
    KID,
    KEY_PASSWORD,
    KEY_PASSWORD_FILE,
    CONSUMER_ORG,
    RESOURCE,
    CACHE_URL,
    CACHE_KEY,
    CACHE_KEY_FILE,
)

#: Shared token stores register a factory ``factory(url, encryption_key=...)`` here under their URL schemes.
CACHE_ENTRY_POINT_GROUP = "maskinporten_auth.caches"
_CACHE_PACKAGES = {
    "redis": "maskinporten-auth[redis]",
    "rediss": "maskinporten-auth[redis]",
    "unix": "maskinporten-auth[redis]",
}

_PASSWORD_SCHEMES = ("file", "pkcs12")

# The MaskinportenAuth keyword each variable feeds, and the error fields that map back to the variable.
_KEYWORD_OF = {
    ENV: "environment",
    CLIENT_ID: "client_id",
    SCOPES: "scopes",
    KEY: "signer",
    KID: "signer",
    KEY_PASSWORD: "signer",
    CONSUMER_ORG: "consumer_org",
    RESOURCE: "resource",
    CACHE_URL: "cache",
}
_FIELD_TO_SUFFIX = {
    "environment": ENV,
    "issuer": ENV,
    "client_id": CLIENT_ID,
    "scopes": SCOPES,
    "scope": SCOPES,
    "signer": KEY,
    "key": KEY,
    "jwk": KEY,
    "pkcs12": KEY,
    "certificate_chain": KEY,
    "kid": KID,
    "password": KEY_PASSWORD,
    "consumer_org": CONSUMER_ORG,
    "resource": RESOURCE,
    "cache": CACHE_URL,
}


def _scheme(value: str) -> str:
    """The URI scheme of ``value`` in lower case, or "" when it has none or is not a URI at all."""
    try:
        return urlsplit(value).scheme.lower()
    except ValueError:
        return ""


def key_uri(value: str) -> str:
    """Turn a key setting into a key URI: a URI stays as it is, a local path becomes ``file:`` or ``pkcs12:``.

    A path is taken relative to the working directory; ``.p12`` and ``.pfx`` files are PKCS#12.
    """
    if len(_scheme(value)) > 1:  # a one-letter "scheme" is a Windows drive
        return value
    try:
        uri = Path(value).expanduser().resolve().as_uri()
    except (ValueError, OSError, RuntimeError):  # not a path at all (a NUL byte, say): the URI check says why
        return value
    if Path(value).suffix.lower() in (".p12", ".pfx"):
        return "pkcs12:" + uri.removeprefix("file:")
    return uri


class EnvConfig:
    """Reads Maskinporten settings from environment variables named ``<prefix><SUFFIX>``.

    Args:
        prefix: the variables' common prefix; give each integration in a process its own
            (``"PAYROLL_MASKINPORTEN_"``).
        environ: where to read them; ``os.environ`` by default.

    Each reader method validates its setting and raises :class:`ConfigurationError` whose ``field`` is the
    full name of the variable at fault.

    """

    def __init__(self, prefix: str = DEFAULT_PREFIX, environ: Mapping[str, str] | None = None) -> None:
        if not isinstance(prefix, str):
            raise ConfigurationError("prefix", f"must be a string, got {type(prefix).__name__}")
        self.prefix = prefix
        self.environ: Mapping[str, str] = os.environ if environ is None else environ

    def name(self, suffix: str) -> str:
        """Return the full name of a variable: ``name("KEY")`` is ``"MASKINPORTEN_KEY"``."""
        return self.prefix + suffix

    def get(self, suffix: str) -> str | None:
        """Return a variable's value without surrounding whitespace, or None if it is unset or empty."""
        value = self.environ.get(self.name(suffix))
        if value is None or not value.strip():
            return None
        return value.strip()

    def require(self, suffix: str) -> str:
        """Return a variable's value, or raise :class:`ConfigurationError` if it is unset or empty."""
        value = self.get(suffix)
        if value is None:
            state = "is empty" if self.name(suffix) in self.environ else "is not set"
            raise ConfigurationError(self.name(suffix), f"{state}; {_PURPOSE[suffix]}")
        return value

    def environment(self) -> Environment:
        """Return the environment ``ENV`` names: ``test`` (default), ``prod``, or a discovered issuer URL."""
        from .environment import resolve_environment  # httpx loads only once the environment is needed

        value = self.get(ENV) or "test"
        try:
            return resolve_environment(value, self.name(ENV))
        except ConfigurationError as exc:
            if exc.field == self.name(ENV):
                raise
            raise ConfigurationError(self.name(ENV), exc.problem) from exc

    def client_id(self) -> str:
        """Return ``CLIENT_ID``, the integration's client id."""
        return validate_client_id(self.require(CLIENT_ID), self.name(CLIENT_ID))

    def scopes(self) -> list[str]:
        """Return ``SCOPES`` split on spaces and commas, without duplicates, in the order given."""
        return list(validate_scopes(self.require(SCOPES), self.name(SCOPES)))

    def _secret(self, suffix: str, file_suffix: str) -> tuple[bytes, bool] | None:
        """A secret given in ``suffix`` or in the file ``file_suffix`` names, and whether it came from the file."""
        direct = self.environ.get(self.name(suffix)) or None
        path = self.get(file_suffix)
        if direct is not None and path is not None:
            raise ConfigurationError(self.name(file_suffix), f"set either it or {self.name(suffix)}, not both")
        if direct is not None:
            return direct.encode("utf-8"), False
        if path is None:
            return None
        from .local_key import read_file

        secret = read_file(path, self.name(file_suffix))
        if not secret.removesuffix(b"\n").removesuffix(b"\r"):
            raise ConfigurationError(self.name(file_suffix), f"the file {path!r} is empty")
        return secret, True

    def password(self) -> bytes | None:
        """Return the key password from ``KEY_PASSWORD`` or the file ``KEY_PASSWORD_FILE`` names, or None."""
        found = self._secret(KEY_PASSWORD, KEY_PASSWORD_FILE)
        if found is None:
            return None
        secret, from_file = found
        return secret.removesuffix(b"\n").removesuffix(b"\r") if from_file else secret

    def _password_suffix(self) -> str:
        return KEY_PASSWORD_FILE if self.get(KEY_PASSWORD_FILE) is not None else KEY_PASSWORD

    def signer(self) -> Signer:
        """Return the signer for ``KEY`` (a key URI or a local key file's path), with ``KID`` and the key password."""
        from .uri import signer_from_uri

        uri = key_uri(self.require(KEY))
        scheme = _scheme(uri)
        kid = self.get(KID)
        password = self.password()
        if password is not None and scheme not in _PASSWORD_SCHEMES:
            raise ConfigurationError(
                self.name(self._password_suffix()), f"applies only to file: and pkcs12: keys, not {scheme}:"
            )
        try:
            return signer_from_uri(uri, kid=kid, password=password)
        except ConfigurationError as exc:
            suffix = _FIELD_TO_SUFFIX.get(exc.field, KEY)
            if suffix == KEY_PASSWORD:
                suffix = self._password_suffix()
            raise ConfigurationError(self.name(suffix), exc.problem) from exc
        except SigningError as exc:
            raise ConfigurationError(self.name(KEY), str(exc)) from exc

    def consumer_org(self) -> str | None:
        """Return ``CONSUMER_ORG``, a valid organisation number, or None."""
        value = self.get(CONSUMER_ORG)
        return None if value is None else validate_orgno(value, self.name(CONSUMER_ORG))

    def resource(self) -> str | None:
        """Return ``RESOURCE``, an absolute URI, or None."""
        value = self.get(RESOURCE)
        if value is None:
            return None
        validate_resource(value, self.name(RESOURCE))
        return value

    def cache(self) -> TokenStore | None:
        """Return the shared token store ``CACHE_URL`` names, sealed with ``CACHE_KEY`` or ``CACHE_KEY_FILE``, or None.

        The store comes from the backend registered for the URL's scheme (``maskinporten-auth[redis]`` for
        ``redis://``, ``rediss://`` and ``unix://``); the key is passed on as given (base64, or a key file's bytes).
        """
        url = self.get(CACHE_URL)
        found = self._secret(CACHE_KEY, CACHE_KEY_FILE)
        key_suffix = CACHE_KEY_FILE if self.get(CACHE_KEY_FILE) is not None else CACHE_KEY
        if url is None:
            if found is not None:
                raise ConfigurationError(self.name(key_suffix), f"applies only with {self.name(CACHE_URL)}")
            return None
        factory = self._cache_factory(_scheme(url))
        try:
            store: TokenStore = factory(url, encryption_key=None if found is None else found[0])
        except ConfigurationError as exc:
            suffix = key_suffix if exc.field == "encryption_key" else CACHE_URL
            raise ConfigurationError(self.name(suffix), exc.problem) from exc
        return store

    def _cache_factory(self, scheme: str) -> Callable[..., TokenStore]:
        from importlib.metadata import entry_points  # read only when a cache URL is configured

        for entry_point in entry_points(group=CACHE_ENTRY_POINT_GROUP):
            if entry_point.name == scheme:
                factory: Callable[..., TokenStore] = entry_point.load()
                return factory
        if scheme in _CACHE_PACKAGES:
            problem = f"the {scheme}:// token cache is not installed; pip install '{_CACHE_PACKAGES[scheme]}'"
        else:
            problem = f"must be a redis://, rediss:// or unix:// URL, got a {scheme or 'relative'}: URL"
        raise ConfigurationError(self.name(CACHE_URL), problem)

    def settings(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """Read the keyword arguments of ``MaskinportenAuth`` that the variables give.

        A keyword in ``overrides`` (``environment``, ``client_id``, ``scopes``, ``signer``, ``consumer_org``,
        ``resource``, ``cache``) replaces its variable, which is then not read at all.
        """
        readers: dict[str, Callable[[], Any]] = {
            "environment": self.environment,
            "client_id": self.client_id,
            "scopes": self.scopes,
            "signer": self.signer,
            "consumer_org": self.consumer_org,
            "resource": self.resource,
            "cache": self.cache,
        }
        return {keyword: reader() for keyword, reader in readers.items() if keyword not in overrides}

    @contextmanager
    def naming_variables(self, settings: Mapping[str, Any]) -> Iterator[None]:
        """Re-raise a ConfigurationError about a setting read from a variable as one naming the variable.

        ``settings`` are what :meth:`settings` read; an error about a keyword given otherwise passes unchanged.
        """
        try:
            yield
        except ConfigurationError as exc:
            suffix = _FIELD_TO_SUFFIX.get(exc.field)
            if suffix is None or _KEYWORD_OF[suffix] not in settings:
                raise
            raise ConfigurationError(self.name(suffix), exc.problem) from exc

    def variable_for(self, field: str) -> str | None:
        """The variable that feeds the setting ``field`` names (``"kid"`` gives ``MASKINPORTEN_KID``), or None."""
        suffix = _FIELD_TO_SUFFIX.get(field)
        return None if suffix is None else self.name(suffix)


_PURPOSE = {
    CLIENT_ID: "set it to the integration's client id from Samarbeidsportalen",
    SCOPES: "set it to the scopes to request, separated by spaces or commas",
    KEY: "set it to a key URI such as file:///etc/maskinporten/key.pem, or a key file's path",
}
