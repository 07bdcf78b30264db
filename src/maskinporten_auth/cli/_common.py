"""What every ``maskinporten`` subcommand shares: exit codes, errors, secrets, key arguments and configuration."""

from __future__ import annotations

import argparse
import enum
import getpass
import json
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from ..config import (
    CLIENT_ID,
    CONSUMER_ORG,
    DEFAULT_PREFIX,
    ENV,
    KEY,
    KEY_PASSWORD,
    KID,
    RESOURCE,
    SCOPES,
    EnvConfig,
    key_uri,
)
from ..errors import (
    ConfigurationError,
    InvalidResponseError,
    NetworkError,
    ServerError,
    SigningError,
    TokenRequestError,
)

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import rsa

    from ..signer import Signer

__all__ = [
    "CliError",
    "ConfigSource",
    "ExitCode",
    "add_config_arguments",
    "exit_code_for",
    "print_json",
    "public_key_file",
    "read_public_key",
    "read_secret",
    "warn",
]


class ExitCode(enum.IntEnum):
    """The exit statuses of ``maskinporten``; scripts may rely on them."""

    OK = 0
    """Success."""
    REFUSED = 1
    """Maskinporten refused the request, a token failed verification, or ``doctor`` found a problem."""
    USAGE = 2
    """Bad arguments or configuration: a missing variable, an unreadable key, a file that would be overwritten."""
    UNAVAILABLE = 3
    """Maskinporten (or a JWKS endpoint) could not be reached or answered 5xx, 429 or garbage; or, for ``doctor``,
    the shared token cache failed its probe."""
    SIGNING = 4
    """The key backend (KMS, Vault, Key Vault) failed to sign or to describe its key."""
    EXPIRING = 5
    """``keys status``: a key or certificate expires within the warning period (renew or rotate it)."""
    INTERRUPTED = 130
    """Interrupted (Ctrl-C)."""


class CliError(Exception):
    """A failure the command reports on stderr and turns into an exit status."""

    def __init__(self, message: str, code: ExitCode = ExitCode.USAGE) -> None:
        super().__init__(message)
        self.code = code


def exit_code_for(error: BaseException) -> ExitCode:
    """Return the exit status for an error a command let through."""
    if isinstance(error, CliError):
        return error.code
    from ..selfservice import SelfServiceError

    if isinstance(error, SelfServiceError):
        return ExitCode.UNAVAILABLE if error.retryable else ExitCode.REFUSED
    if isinstance(error, (NetworkError, ServerError, InvalidResponseError)) or _unreachable(error):
        return ExitCode.UNAVAILABLE
    if isinstance(error, TokenRequestError):
        return ExitCode.REFUSED
    if isinstance(error, SigningError):
        return ExitCode.SIGNING
    return ExitCode.USAGE


def _unreachable(error: BaseException) -> bool:
    """Whether ``error`` came from a server that could not be reached or answered 5xx or 429 (as in discovery)."""
    import httpx  # not at the top: `maskinporten --help` must not pay for it

    cause = error.__cause__
    while cause is not None:
        if isinstance(cause, httpx.TransportError):
            return True
        if isinstance(cause, httpx.HTTPStatusError):
            status = cause.response.status_code
            return status >= 500 or status == 429
        cause = cause.__cause__
    return False


def warn(message: str) -> None:
    """Write a line to stderr."""
    print(message, file=sys.stderr)


def print_json(value: Any) -> None:
    """Write ``value`` to stdout as indented JSON."""
    print(json.dumps(value, indent=2, ensure_ascii=False))


def table_lines(rows: Sequence[Sequence[str]]) -> list[str]:
    """``rows`` (a header first) as lines of text: each column as wide as its widest cell, two spaces apart."""
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]


def read_secret(*, env: str | None, file: str | None, prompt: str | None, confirm: bool = False) -> bytes:
    """Read a passphrase from an environment variable, a file, or the terminal; never from the command line.

    A file's one trailing newline is dropped. Prompting needs a terminal; ``confirm`` asks twice.
    """
    if env is not None:
        value = os.environ.get(env)
        if not value:
            raise CliError(f"the environment variable {env} is not set or empty")
        return value.encode("utf-8")
    if file is not None:
        try:
            secret = Path(file).read_bytes().removesuffix(b"\n").removesuffix(b"\r")
        except OSError as exc:
            raise CliError(f"cannot read the passphrase file {file!r}: {exc.strerror}") from None
        if not secret:
            raise CliError(f"the passphrase file {file!r} is empty")
        return secret
    if prompt is None or not sys.stdin.isatty():
        raise CliError("no terminal to ask for a passphrase on; use --passphrase-env or --passphrase-file")
    first = getpass.getpass(prompt)
    if not first:
        raise CliError("an empty passphrase was given")
    if confirm and getpass.getpass("Repeat: ") != first:
        raise CliError("the passphrases do not match")
    return first.encode("utf-8")


def read_public_key(path: Path) -> tuple[rsa.RSAPublicKey, dict[str, str]]:
    """The RSA public key in ``path`` and its JWK's ``kid`` and ``alg`` where given.

    ``path`` holds a JWK, a JWK set of one key, or a PEM public key.
    A JWK's private members, if any, are ignored. Anything else is a usage error.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from ..jwk import public_key_from_jwk

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}") from None
    if data.lstrip().startswith(b"-----BEGIN PUBLIC KEY-----"):
        key = serialization.load_pem_public_key(data)
        if not isinstance(key, rsa.RSAPublicKey):
            raise CliError(f"{path} holds a {type(key).__name__}, not an RSA public key")
        return key, {}
    try:
        document = json.loads(data)
    except ValueError:
        raise CliError(f"{path} holds neither a JWK nor a PEM public key") from None
    if isinstance(document, dict) and isinstance(document.get("keys"), list) and len(document["keys"]) == 1:
        document = document["keys"][0]
    if not isinstance(document, dict) or document.get("kty") != "RSA":
        raise CliError(f"{path} does not hold one RSA JWK")
    try:
        key = public_key_from_jwk(document)
    except (KeyError, TypeError, ValueError) as exc:
        raise CliError(f"{path} does not hold a valid RSA JWK: {exc}") from None
    return key, {name: document[name] for name in ("kid", "alg") if isinstance(document.get(name), str)}


def public_key_file(value: str | None) -> Path | None:
    """The local file ``value`` (a key URI or path) names if it holds a public key (a JWK or PEM), else None."""
    uri = None if value is None else urlsplit(key_uri(value))
    if uri is None or uri.scheme != "file":
        return None
    path = Path(unquote(uri.path))  # as local keys read their file: URIs
    try:
        with path.open("rb") as file:
            start = file.read(64).lstrip()
    except OSError:
        return None
    return path if start.startswith((b"{", b"-----BEGIN PUBLIC KEY-----")) else None


# Command-line options that stand in for a variable: (flag, variable suffix, help).
_CONFIG_FLAGS = (
    ("--env", ENV, "test, prod or an issuer URL [${prefix}ENV, default test]"),
    ("--client-id", CLIENT_ID, "the integration's client id [${prefix}CLIENT_ID]"),
    ("--scope", SCOPES, "scopes to request, separated by spaces or commas; repeatable [${prefix}SCOPES]"),
    ("--key", KEY, "a key URI or a local key file [${prefix}KEY]"),
    ("--kid", KID, "the key id registered on the integration [${prefix}KID]"),
    ("--consumer-org", CONSUMER_ORG, "act for this customer's organisation number [${prefix}CONSUMER_ORG]"),
    ("--resource", RESOURCE, "restrict the token's audience to this resource [${prefix}RESOURCE]"),
)


def add_config_arguments(parser: argparse.ArgumentParser, *suffixes: str) -> None:
    """Add ``--prefix`` and the options that override the given variables (all of them by default)."""
    group = parser.add_argument_group(
        "configuration", "Each option overrides the environment variable in brackets (prefix MASKINPORTEN_)."
    )
    group.add_argument(
        "--prefix", default=DEFAULT_PREFIX, help="the environment variables' prefix (default: %(default)s)"
    )
    for flag, suffix, text in _CONFIG_FLAGS:
        if suffixes and suffix not in suffixes:
            continue
        dest = flag.removeprefix("--").replace("-", "_")
        action = "append" if suffix == SCOPES else "store"
        group.add_argument(flag, dest=dest, action=action, metavar=suffix, help=text.replace("${prefix}", "$"))


class ConfigSource:
    """The configuration of a command: the environment, overridden by its command-line options.

    Errors from :attr:`config` name the variable; :meth:`blame_options` renames them after the option that set it
    (or the name ``shown_as`` gives that option: a positional argument that stands in for it, say), or, for a value
    given neither way, after the option and the variable (``--kid (or MASKINPORTEN_KID)``).
    """

    def __init__(
        self,
        args: argparse.Namespace,
        environ: Mapping[str, str] | None = None,
        *,
        shown_as: Mapping[str, str] | None = None,
    ) -> None:
        layered = dict(os.environ if environ is None else environ)
        config = EnvConfig(args.prefix, layered)
        self._option_of: dict[str, str] = {}
        self._unset_option_of: dict[str, str] = {}
        for flag, suffix, _text in _CONFIG_FLAGS:
            dest = flag.removeprefix("--").replace("-", "_")
            if not hasattr(args, dest):
                continue
            value = getattr(args, dest)
            if value is None:
                if config.get(suffix) is None:
                    self._unset_option_of[config.name(suffix)] = flag
                continue
            if suffix == SCOPES:
                value = " ".join(value)
            layered[config.name(suffix)] = value
            self._option_of[config.name(suffix)] = (shown_as or {}).get(flag, flag)
        self.environ = layered
        self.config = config

    def _where(self, field: str) -> str | None:
        """What to name for ``field`` in a message, or None when ``field`` itself is right.

        That is the option that set its variable, or the option and the variable when neither was given.
        ``field`` may also name a setting that a variable feeds (``kid``), as the library's own errors do.
        """
        variable = self.config.variable_for(field) or field
        if variable in self._option_of:
            return self._option_of[variable]
        if variable in self._unset_option_of:
            return f"{self._unset_option_of[variable]} (or {variable})"
        return variable if variable != field else None

    def describe(self, error: ConfigurationError) -> str:
        """Say what is wrong, naming the option that set the value, or the option and the variable when unset."""
        return f"{self._where(error.field) or error.field}: {error.problem}"

    @contextmanager
    def blame_options(self) -> Iterator[None]:
        """Re-raise a ConfigurationError about a variable as one naming what :meth:`describe` names."""
        try:
            yield
        except ConfigurationError as exc:
            where = self._where(exc.field)
            if where is None:
                raise
            raise ConfigurationError(where, exc.problem) from exc

    def signer(self) -> Signer:
        """Load the key; ask for its password on the terminal if it is encrypted and none was configured."""
        with self.blame_options():
            try:
                return self.config.signer()
            except ConfigurationError as exc:
                if not self._may_prompt(exc):
                    raise
            self.environ[self.config.name(KEY_PASSWORD)] = read_secret(
                env=None, file=None, prompt="Key password: "
            ).decode("utf-8")
            return self.config.signer()

    def _may_prompt(self, error: ConfigurationError) -> bool:
        return error.field == self.config.name(KEY_PASSWORD) and self.config.password() is None and sys.stdin.isatty()
