"""``maskinporten keys list|status|add|rotate|renew|remove`` and ``scopes show``: Digdir's self-service API.

The admin integration's credentials come from ``MASKINPORTEN_*`` as for ``token`` (its token asks for
``idporten:dcr.read`` and ``idporten:dcr.write``); ``--client-id`` names the client whose keys are managed, by
default the admin's own. ``MASKINPORTEN_SELFSERVICE_URL`` overrides the API's base URL (test and prod are known).
"""

from __future__ import annotations

import argparse
import datetime
import shlex
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ..config import ENV, KEY, KID, key_uri
from ..errors import ConfigurationError
from ._common import CliError, ConfigSource, ExitCode, add_config_arguments, print_json, table_lines, warn

if TYPE_CHECKING:
    from ..selfservice import RegisteredKey, SelfService
    from ..signer import Signer

__all__ = ["configure_keys", "configure_scopes"]

SELFSERVICE_URL = "SELFSERVICE_URL"
DEFAULT_WARN_DAYS = 30

_KEYS_EPILOG = """\
The admin integration (MASKINPORTEN_CLIENT_ID, _KEY, _KID, _ENV) needs the scopes idporten:dcr.read and, to change
keys, idporten:dcr.write. --client-id names the client whose keys are managed (default: the admin's own).

runbook (see the guide "Keys: expiry and rotation"):
  maskinporten keys status                                  # days left; exit 5 within --warn-days
  maskinporten keygen secrets/2027.pem --kid 2027 > /dev/null
  maskinporten keys rotate secrets/2027.pem --new-kid 2027 --dry-run
  maskinporten keys rotate secrets/2027.pem --new-kid 2027  # add, wait until Maskinporten accepts it
  # deploy MASKINPORTEN_KEY/_KID of the new key, then, once no process signs with the old one:
  maskinporten keys remove 2026

exit status: 0 done (status: every key has more than --warn-days left); 1 the API or Maskinporten refused, or
the signing key is not registered or has expired; 2 usage; 3 the API unreachable; 4 the key backend failed;
5 (status) a key or certificate expires within --warn-days.
"""


def configure_keys(parser: argparse.ArgumentParser) -> None:
    """Describe ``keys`` and add its subcommands."""
    parser.description = "List, check, add, rotate, renew and remove the keys registered on a Maskinporten client."
    parser.epilog = _KEYS_EPILOG
    actions = parser.add_subparsers(title="actions", metavar="ACTION", dest="action", required=True)

    def action(name: str, summary: str) -> argparse.ArgumentParser:
        command = actions.add_parser(name, help=summary, description=summary)
        command.add_argument("--client-id", dest="managed_client", help="the client to manage (default: the admin's)")
        command.add_argument("--json", action="store_true", help="print JSON instead of a table")
        add_config_arguments(command, ENV, KEY, KID)
        return command

    action("list", "list the registered keys").set_defaults(func=list_keys)
    status = action("status", "days left on each key and on the signing key or certificate")
    status.add_argument("--warn-days", type=float, default=DEFAULT_WARN_DAYS, help="default: %(default)s")
    status.set_defaults(func=key_status)
    for name, summary, func in (
        ("add", "register the public key of KEY (any key URI; the private key stays where it is)", add_key),
        ("rotate", "add KEY, wait until Maskinporten accepts it, and (--remove-after) remove the old key", rotate),
    ):
        command = action(name, summary)
        command.add_argument("new_key", metavar="KEY", help="the new key: a key URI or a local key file")
        command.add_argument("--new-kid", help="the new key's kid (default: the key's thumbprint)")
        command.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
        command.set_defaults(func=func)
    rotate_command = actions.choices["rotate"]
    rotate_command.add_argument("--old-kid", help="the key to remove (default: MASKINPORTEN_KID when it differs)")
    rotate_command.add_argument("--remove-after", type=float, metavar="SECONDS", help="remove the old key then")
    rotate_command.add_argument("--timeout", type=float, default=180.0, help="propagation wait (default: 180 s)")
    for name, summary, func in (
        ("renew", "re-post the key KID: it then lives a year from now", renew_key),
        ("remove", "remove the key KID, keeping the others", remove_key),
    ):
        command = action(name, summary)
        command.add_argument("target_kid", metavar="KID", help="the key's kid")
        command.add_argument("--dry-run", action="store_true", help="print what would change, change nothing")
        command.set_defaults(func=func)
    actions.choices["remove"].add_argument(
        "--force", action="store_true", help="remove it even if MASKINPORTEN_KID signs with it"
    )


def configure_scopes(parser: argparse.ArgumentParser) -> None:
    """Describe ``scopes`` and add its subcommands."""
    parser.description = "Read Digdir's public scope catalogue."
    actions = parser.add_subparsers(title="actions", metavar="ACTION", dest="action", required=True)
    show = actions.add_parser("show", help="show a scope's catalogue entry", description="Show a scope's entry.")
    show.add_argument("scope", help="the scope, e.g. nav:inntektsmelding/lps.write")
    show.add_argument("--json", action="store_true", help="print JSON")
    add_config_arguments(show, ENV)
    show.set_defaults(func=show_scope)


# Setup


def selfservice_base_url(source: ConfigSource) -> str:
    """The API's base URL: ``SELFSERVICE_URL``, or the one of ``ENV`` when it is test or prod."""
    from ..selfservice import ENVIRONMENTS

    explicit = source.config.get(SELFSERVICE_URL)
    if explicit:
        return explicit
    environment = source.config.get(ENV) or "test"
    if environment in ENVIRONMENTS:
        return ENVIRONMENTS[environment]
    raise ConfigurationError(
        source.config.name(SELFSERVICE_URL),
        f"is needed for the environment {environment!r} (only test and prod have a known self-service API)",
    )


def selfservice_client(source: ConfigSource, base_url: str, signer: Signer | None) -> SelfService:
    """A client of the API at ``base_url``; with ``signer``, authenticated as the configured integration."""
    from ..auth import MaskinportenAuth
    from ..selfservice import ADMIN_SCOPES, SelfService

    if signer is None:
        return SelfService(None, base_url)
    with source.blame_options():
        auth = MaskinportenAuth.from_config(
            source.config, signer=signer, scopes=list(ADMIN_SCOPES), consumer_org=None, resource=None
        )
    return SelfService(auth, base_url)


def _api(source: ConfigSource, *, admin: bool = True) -> SelfService:
    with source.blame_options():
        base_url = selfservice_base_url(source)
    return selfservice_client(source, base_url, source.signer() if admin else None)


@contextmanager
def _managed(args: argparse.Namespace, source: ConfigSource) -> Iterator[tuple[SelfService, str, bool]]:
    """The API as the configured admin, the client to manage, and whether it is the admin's own; closed after."""
    api = _api(source)
    try:
        admin_id = api.admin_auth.client_id if api.admin_auth is not None else None
        client_id = str(args.managed_client or admin_id)
        yield api, client_id, client_id == admin_id
    finally:
        api.close()
        if api.admin_auth is not None:
            api.admin_auth.close()


def _new_signer(args: argparse.Namespace) -> Signer:
    from ..jwk import jwk_thumbprint
    from ..uri import signer_from_uri

    uri = key_uri(args.new_key)
    try:
        signer = signer_from_uri(uri, kid=args.new_kid)
        if signer.kid is None and not signer.x5c:
            signer = signer_from_uri(uri, kid=jwk_thumbprint(signer.public_key()))
            warn(f"No --new-kid given; using the key's thumbprint as kid: {signer.kid}")
    except ConfigurationError as exc:
        raise ConfigurationError("KEY", exc.problem) from exc
    return signer


# Output


def _print_keys(keys: Sequence[RegisteredKey], as_json: bool) -> None:
    if as_json:
        print_json([key.to_dict() for key in keys])
        return
    if not keys:
        print("no keys registered")
        return
    rows = []
    for key in keys:
        days = key.days_left()
        rows.append(
            [
                key.kid,
                key.alg or "-",
                str(key.size or "-"),
                f"{key.expires_at:%Y-%m-%d %H:%M}" if key.expires_at else "-",
                "-" if days is None else f"{days:.0f}",
                "yes" if key.signing else "",
            ]
        )
    print("\n".join(table_lines([["KID", "ALG", "BITS", "EXPIRES (UTC)", "DAYS LEFT", "SIGNING"], *rows])))


# Commands


def list_keys(args: argparse.Namespace) -> ExitCode:
    """Print the registered keys."""
    with _managed(args, ConfigSource(args)) as (api, client_id, own):
        keys = api.keys(client_id, signer=api.admin_auth.signer if own and api.admin_auth else None)
    _print_keys(keys, args.json)
    return ExitCode.OK


def key_status(args: argparse.Namespace) -> ExitCode:
    """Print days left on each key; exit 1 when the signing key is unusable, 5 when one expires soon."""
    from ..selfservice import key_expiry

    source = ConfigSource(args)
    signer = source.signer()
    certificate = key_expiry(signer)
    if certificate is not None:  # an enterprise certificate: its notAfter, without the admin scopes
        days = certificate.days_left()
        report: dict[str, Any] = {"certificate": {"expires_at": certificate.expires_at.isoformat(), "days_left": days}}
        if args.json:
            print_json(report)
        else:
            print(f"enterprise certificate expires {certificate.expires_at:%Y-%m-%d %H:%M} UTC: {days:.0f} days left")
        return ExitCode.REFUSED if days <= 0 else ExitCode.EXPIRING if days <= args.warn_days else ExitCode.OK
    with _managed(args, source) as (api, client_id, own):
        keys = api.keys(client_id, signer=signer if own else None)
    _print_keys(keys, args.json)
    signing = next((key for key in keys if key.signing), None)
    if own and (signing is None or (signing.days_left() or 1.0) <= 0):
        warn(f"the signing key {signer.kid} is {'expired' if signing else 'not registered on the client'}")
        return ExitCode.REFUSED
    left = [remaining for key in keys if (remaining := key.days_left()) is not None]
    if any(remaining <= args.warn_days for remaining in left):
        warn(f"a key expires within {args.warn_days:.0f} days: renew it (keys renew KID) or rotate (keys rotate)")
        return ExitCode.EXPIRING
    return ExitCode.OK


def add_key(args: argparse.Namespace) -> ExitCode:
    """Register the public key of KEY on the client."""
    new = _new_signer(args)
    jwk = new.public_jwk()
    with _managed(args, ConfigSource(args)) as (api, client_id, _own):
        if args.dry_run:
            kids = [key.kid for key in api.keys(client_id)]
            print(f"would add {jwk.get('kid')} to client {client_id}, keeping {', '.join(kids) or 'no key'}")
            return ExitCode.OK
        added = api.add_key(client_id, new)
    _print_keys([added], args.json)
    return ExitCode.OK


def rotate(args: argparse.Namespace) -> ExitCode:
    """Add KEY, wait until Maskinporten accepts it, and remove the old key when asked."""
    from ..selfservice import RotationProgress

    new = _new_signer(args)
    source = ConfigSource(args)

    def show(progress: RotationProgress) -> None:
        if not args.json:
            warn(f"[{progress.step}] {progress.message}")

    with _managed(args, source) as (api, client_id, _own):
        configured_kid = source.config.get(KID)
        old_kid = args.old_kid or (configured_kid if configured_kid != new.kid else None)
        result = api.rotate(
            client_id,
            new,
            remove_after=args.remove_after,
            dry_run=args.dry_run,
            old_kid=old_kid,
            propagation_timeout=args.timeout,
            progress=show,
        )
    if args.json:
        print_json(result.to_dict())
    elif result.dry_run:
        print("plan:")
        for number, step in enumerate(result.plan, 1):
            print(f"  {number}. {step}")
    else:
        print(f"Maskinporten accepts {result.new_kid} on client {client_id}. Sign with it now:")
        print(f"  export {source.config.name(KEY)}={shlex.quote(key_uri(args.new_key))}")
        print(f"  export {source.config.name(KID)}={shlex.quote(result.new_kid)}")
        if result.old_kid and not result.removed:
            print(f"Then, once no process signs with {result.old_kid}: maskinporten keys remove {result.old_kid}")
    return ExitCode.OK


def renew_key(args: argparse.Namespace) -> ExitCode:
    """Re-post a key so that it lives a year from now."""
    with _managed(args, ConfigSource(args)) as (api, client_id, _own):
        if args.dry_run:
            found = [key for key in api.keys(client_id) if key.kid == args.target_kid]
            if not found:
                raise CliError(f"client {client_id} has no key {args.target_kid!r}", ExitCode.REFUSED)
            now = datetime.datetime.now(datetime.timezone.utc)
            print(
                f"would renew {args.target_kid} (expires {found[0].expires_at or 'never'}) until about "
                f"{now + datetime.timedelta(days=365):%Y-%m-%d}"
            )
            return ExitCode.OK
        renewed = api.renew_key(client_id, args.target_kid)
    _print_keys([renewed], args.json)
    return ExitCode.OK


def remove_key(args: argparse.Namespace) -> ExitCode:
    """Remove a key, refusing the one this configuration signs with unless forced."""
    source = ConfigSource(args)
    with _managed(args, source) as (api, client_id, own):
        if own and args.target_kid == source.config.get(KID) and not args.force:
            raise CliError(
                f"{args.target_kid} is the key {source.config.name(KID)} signs with; rotate first, or --force",
                ExitCode.REFUSED,
            )
        if args.dry_run:
            kids = [key.kid for key in api.keys(client_id)]
            state = "would remove" if args.target_kid in kids else "nothing to remove:"
            print(f"{state} {args.target_kid} from client {client_id} ({', '.join(kids) or 'no keys'})")
            return ExitCode.OK
        removed = api.remove_key(client_id, args.target_kid)
    if args.json:
        print_json({"kid": args.target_kid, "removed": removed})
    else:
        print(f"removed {args.target_kid}" if removed else f"{args.target_kid} was not registered")
    return ExitCode.OK


def show_scope(args: argparse.Namespace) -> ExitCode:
    """Print a scope's entry in Digdir's catalogue."""
    api = _api(ConfigSource(args), admin=False)
    try:
        scope = api.scope(args.scope)
    finally:
        api.close()
    if args.json:
        print_json(scope.to_dict())
        return ExitCode.OK
    delegation = f"yes, through {scope.delegation_source}" if scope.delegable else "no"
    rows = [
        ["scope", scope.name],
        ["description", scope.description or "-"],
        ["active", "yes" if scope.active else "no"],
        ["token lifetime", f"{scope.token_lifetime} s" + ("" if scope.at_max_age else " (Maskinporten's default)")],
        ["delegable (consumer_org)", delegation],
        ["integration types", ", ".join(scope.allowed_integration_types) or "-"],
        ["token type", scope.token_type or "-"],
        ["user consent required", "yes" if scope.requires_user_consent else "no"],
        ["European businesses", "yes" if scope.supports_european_businesses else "no"],
    ]
    print("\n".join(table_lines(rows)))
    for problem in scope.problems():
        warn(f"warning: {problem}")
    return ExitCode.OK
