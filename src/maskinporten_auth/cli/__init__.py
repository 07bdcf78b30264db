"""The ``maskinporten`` command: keys, tokens, diagnosis, readiness per customer and a local Maskinporten.

Exit statuses (see :class:`~maskinporten_auth.cli._common.ExitCode`): 0 success; 1 Maskinporten refused (``check``:
for any customer), a token failed verification, or ``doctor`` found a problem; 2 usage or configuration error;
3 Maskinporten unreachable (network, 5xx, 429); 4 the key backend failed; 5 ``keys status``: a key expires soon;
130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Collection, Sequence

from ..errors import MaskinportenError
from ._common import CliError, ExitCode, exit_code_for, warn
from .version import VersionAction

__all__ = ["ExitCode", "build_parser", "main"]

# Each command: the module that runs it (its configure_<command>(parser) adds the arguments) and the line that
# `maskinporten --help` shows. A module is imported only for the command that runs, so `--help` loads none.
_COMMANDS = {
    "keygen": ("keys", "create an RSA key locally and print the public JWK to register"),
    "jwk": ("keys", "print the public JWK (or JWKS, or PEM) of a key"),
    "keys": ("selfservice", "list, check, add, rotate, renew and remove the keys registered on a client"),
    "scopes": ("selfservice", "show a scope's entry in Digdir's scope catalogue"),
    "token": ("tokens", "get an access token and print it"),
    "decode": ("tokens", "show a token's header and claims; optionally verify it"),
    "check": ("check", "check which customers Maskinporten gives tokens for"),
    "doctor": ("doctor", "check the configuration step by step and explain failures"),
    "emulator": ("emulator", "run a local Maskinporten and print the variables to use it"),
}

_EPILOG = """\
configuration:
  token, doctor and jwk read MASKINPORTEN_ENV, _CLIENT_ID, _SCOPES, _KEY, _KID, _KEY_PASSWORD (or _FILE),
  _CONSUMER_ORG and _RESOURCE; their options override them. check reads them all but _CONSUMER_ORG.
  keys and scopes read the admin integration's _ENV, _CLIENT_ID, _KEY and _KID, and _SELFSERVICE_URL.

exit status:
  0  success
  1  Maskinporten refused the request (check: for any customer), a token failed verification, or doctor
     found a problem
  2  usage or configuration error
  3  Maskinporten (or a JWKS endpoint) unreachable, or it answered 5xx or 429
  4  the key backend (KMS, Vault, Key Vault) failed
  5  keys status: a key or certificate expires within --warn-days
  130 interrupted

Run `maskinporten COMMAND --help` for a command's options and examples.
"""


def build_parser(commands: Collection[str] | None = None) -> argparse.ArgumentParser:
    """Return the argument parser of ``maskinporten``, with the arguments of ``commands`` (default: all)."""
    parser = argparse.ArgumentParser(
        prog="maskinporten",
        description="Maskinporten from the command line: create and show keys, get and inspect tokens, diagnose a "
        "configuration, check which customers are ready, and run a local Maskinporten.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action=VersionAction, help="print the versions of the package and its backends")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", dest="command", required=True)
    for name, (module, summary) in _COMMANDS.items():
        command = subparsers.add_parser(name, help=summary, formatter_class=argparse.RawDescriptionHelpFormatter)
        if commands is None or name in commands:
            configure = getattr(importlib.import_module(f".{module}", __name__), f"configure_{name}")
            configure(command)
    return parser


def _command_in(argv: Sequence[str]) -> str | None:
    """The command ``argv`` names: its first argument that is not an option (the top level's take no values)."""
    return next((argument for argument in argv if not argument.startswith("-")), None)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``maskinporten`` with ``argv`` (default: the process's arguments); return the exit status."""
    arguments = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser([command] if (command := _command_in(arguments)) in _COMMANDS else [])
    args = parser.parse_args(arguments)
    try:
        code: ExitCode = args.func(args)
    except KeyboardInterrupt:
        warn("maskinporten: interrupted")
        return ExitCode.INTERRUPTED
    except (CliError, MaskinportenError) as exc:
        warn(f"maskinporten {args.command}: error: {exc}")
        return exit_code_for(exc)
    return code
