"""The ``maskinporten`` command: keys, tokens, diagnosis, readiness per customer and a local Maskinporten.

Exit statuses (see :class:`~maskinporten_auth.cli._common.ExitCode`): 0 success; 1 Maskinporten refused (``check``:
for any customer), a token failed verification, or ``doctor`` found a problem; 2 usage or configuration error;
3 Maskinporten unreachable (network, 5xx, 429); 4 the key backend failed; 130 interrupted.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ..errors import MaskinportenError
from . import check, doctor, emulator, keys, tokens
from ._common import CliError, ExitCode, exit_code_for, warn

__all__ = ["ExitCode", "build_parser", "main"]

_EPILOG = """\
configuration:
  token, doctor and jwk read MASKINPORTEN_ENV, _CLIENT_ID, _SCOPES, _KEY, _KID, _KEY_PASSWORD (or _FILE),
  _CONSUMER_ORG and _RESOURCE; their options override them. check reads them all but _CONSUMER_ORG.

exit status:
  0  success
  1  Maskinporten refused the request (check: for any customer), a token failed verification, or doctor
     found a problem
  2  usage or configuration error
  3  Maskinporten (or a JWKS endpoint) unreachable, or it answered 5xx or 429
  4  the key backend (KMS, Vault, Key Vault) failed
  130 interrupted

Run `maskinporten COMMAND --help` for a command's options and examples.
"""


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``maskinporten`` and its subcommands."""
    parser = argparse.ArgumentParser(
        prog="maskinporten",
        description="Maskinporten from the command line: create and show keys, get and inspect tokens, diagnose a "
        "configuration, check which customers are ready, and run a local Maskinporten.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", dest="command", required=True)
    keys.register(subparsers)
    tokens.register(subparsers)
    check.register(subparsers)
    doctor.register(subparsers)
    emulator.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``maskinporten`` with ``argv`` (default: the process's arguments); return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: ExitCode = args.func(args)
    except KeyboardInterrupt:
        warn("maskinporten: interrupted")
        return ExitCode.INTERRUPTED
    except (CliError, MaskinportenError) as exc:
        warn(f"maskinporten {args.command}: error: {exc}")
        return exit_code_for(exc)
    return code
