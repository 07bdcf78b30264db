"""``maskinporten emulator``: run a local Maskinporten in the foreground, with a client registered for your key."""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import threading
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from ..certificates import CertificateChain
from ..config import CLIENT_ID, ENV, KEY, KID, SCOPES, EnvConfig, key_uri
from ..jwk import jwk_thumbprint
from ..orgnr import validate_orgno
from ..selfservice import ADMIN_SCOPES
from ._common import CliError, ConfigSource, ExitCode, add_config_arguments, read_public_key, warn
from .selfservice import SELFSERVICE_URL

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import rsa

__all__ = ["configure_emulator"]

#: A synthetic test organisation (Test-Norge), used as the integration's owner unless --orgno says otherwise.
DEFAULT_ORGNO = "313042995"

_EPILOG = """\
The emulator validates grants as Maskinporten does and issues signed access tokens. It registers one client for
the given key (or public JWK) with the given scopes, prints the `export` lines that point an application (or
`maskinporten token`) at it, and serves until Ctrl-C.

examples:
  maskinporten emulator --key dev.pem --scope nav:oppfolgingsplan/lps.write --port 8080
  (without --kid, the key is registered under its thumbprint, the kid `keygen` and `jwk` suggest)
  maskinporten emulator --key dev.pem --kid dev --scope test:api --delegate 310539759
  maskinporten emulator --key dev.pem --kid dev --scope nav:inntektsmelding/lps.write --systemuser 310539759

Altinn's token exchange answers on the same server: AltinnAuth(auth, environment=<the printed URL>).
  maskinporten emulator --public-jwk partner.jwk.json --client-id partner --scope test:api
"""


def configure_emulator(parser: argparse.ArgumentParser) -> None:
    """Describe ``emulator`` and add its arguments."""
    parser.description = "Run a local Maskinporten emulator in the foreground."
    parser.epilog = _EPILOG
    parser.add_argument("--host", default="127.0.0.1", help="the loopback address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=0, help="the port (default: a free one)")
    parser.add_argument(
        "--orgno", default=DEFAULT_ORGNO, help="the organisation number owning the client (default: %(default)s)"
    )
    parser.add_argument(
        "--delegate",
        action="append",
        default=[],
        metavar="CONSUMER_ORG",
        help="have this customer delegate every scope to --orgno in (emulated) Altinn; repeatable",
    )
    parser.add_argument(
        "--systemuser",
        action="append",
        default=[],
        metavar="ORGNO[:EXTERNAL_REF]",
        help="have this customer approve a system user of the client's system in (emulated) Altinn; repeatable",
    )
    parser.add_argument(
        "--public-jwk", type=Path, metavar="PATH", help="register this public JWK instead of the key's public half"
    )
    add_config_arguments(parser, CLIENT_ID, SCOPES, KEY, KID)
    parser.set_defaults(func=emulator)


def _thumbprint_kid(public_key: rsa.RSAPublicKey) -> str:
    """The key's RFC 7638 thumbprint, the kid ``keygen`` and ``jwk`` suggest, for a key given without one."""
    kid = jwk_thumbprint(public_key)
    warn(f"No kid configured; registering the key under its thumbprint: {kid}")
    return kid


def _stop(signum: int, frame: object) -> NoReturn:
    raise KeyboardInterrupt


def emulator(args: argparse.Namespace) -> ExitCode:
    """Start the emulator, register the client, print the exports, and serve until interrupted."""
    from ..testing import MaskinportenEmulator

    source = ConfigSource(args)
    config = source.config
    with source.blame_options():
        scopes = config.scopes()
        client_id = config.get(CLIENT_ID) or str(uuid.uuid4())
        orgno = validate_orgno(args.orgno, "--orgno")
        consumers = [validate_orgno(org, "--delegate") for org in args.delegate]
        systemusers = [_systemuser(value) for value in args.systemuser]
    exports = {config.name(CLIENT_ID): client_id, config.name(SCOPES): " ".join(scopes)}
    registration: dict[str, Any]
    if args.public_jwk is not None:
        if args.key is not None:
            raise CliError("give --key or --public-jwk, not both")
        public_key, members = read_public_key(args.public_jwk)
        kid = config.get(KID) or members.get("kid") or _thumbprint_kid(public_key)
        registration = {"keys": {kid: public_key}}
        exports[config.name(KID)] = kid
    else:
        signer = source.signer()
        chain = getattr(signer, "certificate_chain", None)
        if isinstance(chain, CertificateChain):
            registration = {"certificates": [chain.certificates[-1]]}
        else:
            kid = signer.kid or _thumbprint_kid(signer.public_key())
            registration = {"keys": {kid: signer.public_key()}}
            exports[config.name(KID)] = kid
        exports[config.name(KEY)] = key_uri(source.environ[config.name(KEY)])

    server = MaskinportenEmulator(host=args.host, port=args.port)
    try:
        # the client may also administer itself, so that `maskinporten keys` works against the emulator
        server.register_client(client_id, orgno=orgno, scopes=[*scopes, *ADMIN_SCOPES], **registration)
        for consumer in consumers:
            for scope in scopes:
                server.delegate(consumer, orgno, scope)
        for customer, external_ref in systemusers:
            server.add_systemuser(customer, client_id, system_id=f"{orgno}_emulated", external_ref=external_ref)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    try:
        server.start()
    except OSError as exc:
        raise CliError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
    signal.signal(signal.SIGTERM, _stop)
    try:
        _print_exports(config, {config.name(ENV): server.issuer, **exports}, consumers, systemusers)
        print(f"# Altinn's token exchange: AltinnAuth(auth, environment={server.url!r})")
        print(f"export {config.name(SELFSERVICE_URL)}={shlex.quote(server.selfservice_url)}  # maskinporten keys")
        warn(
            f"Maskinporten emulator at {server.url}, issuer {server.issuer} (client {client_id}, organisation "
            f"{orgno}); Ctrl-C stops it."
        )
        threading.Event().wait()
    except KeyboardInterrupt:
        warn("Stopping the emulator.")
    finally:
        server.stop()
    return ExitCode.OK


def _systemuser(value: str) -> tuple[str, str | None]:
    orgno, _, external_ref = value.partition(":")
    return validate_orgno(orgno, "--systemuser"), external_ref or None


def _print_exports(
    config: EnvConfig, exports: dict[str, str], consumers: list[str], systemusers: list[tuple[str, str | None]]
) -> None:
    for name, value in exports.items():
        print(f"export {name}={shlex.quote(value)}")
    if config.name(KEY) not in exports:
        print(f"# set {config.name(KEY)} to the private key of the registered JWK")
    for consumer in consumers:
        print(f"# {consumer} has delegated the scopes: export {config.name('CONSUMER_ORG')}={consumer} to act for it")
    for customer, external_ref in systemusers:
        reference = f", external_ref={external_ref!r}" if external_ref else ""
        print(f"# {customer} approved a system user: auth.with_systemuser({customer!r}{reference})")
    sys.stdout.flush()
