"""``maskinporten token`` and ``maskinporten decode``: get a token as configured, and look inside one."""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from typing import Any

import httpx

from ..auth import MaskinportenAuth
from ..config import ENV
from ..environment import Environment
from ..errors import NetworkError
from ..jwk import public_key_from_jwk
from ..jws import RSA_ALGORITHMS, CompactJws, MalformedJws
from ..provider import TokenEvent
from ._common import CliError, ConfigSource, ExitCode, add_config_arguments, print_json, warn

__all__ = ["configure_decode", "configure_token"]

#: Leeway for ``exp`` and ``nbf`` when verifying, for clocks a little apart.
_LEEWAY = 5

_TOKEN_EPILOG = """\
The configuration comes from the MASKINPORTEN_* environment variables; options override them. The token goes to
standard output and nothing else does, so it can be captured:

  TOKEN=$(maskinporten token --scope nav:oppfolgingsplan/lps.write --consumer-org 310539759)
  maskinporten token --json | jq .claims.consumer
"""

_DECODE_EPILOG = """\
The token is read from the argument or, with none or "-", from standard input (which keeps it out of the shell
history). A "Bearer " prefix is ignored. --verify checks the signature against the environment's JWKS, the issuer
and the expiry, and exits 1 if any check fails.

  maskinporten token | maskinporten decode --verify
"""


def configure_token(parser: argparse.ArgumentParser) -> None:
    """Describe ``token`` and add its arguments."""
    parser.description = "Get a Maskinporten access token with the configured (or given) client, key and scopes."
    parser.epilog = _TOKEN_EPILOG
    parser.add_argument(
        "--json", action="store_true", help="print the token with its decoded header, claims and expiry as JSON"
    )
    add_config_arguments(parser)
    parser.set_defaults(func=token)


def configure_decode(parser: argparse.ArgumentParser) -> None:
    """Describe ``decode`` and add its arguments."""
    parser.description = "Decode a JWT (an access token or a grant) and print its header and claims as JSON."
    parser.epilog = _DECODE_EPILOG
    parser.add_argument("token", nargs="?", default="-", help="the JWT (default: read standard input)")
    parser.add_argument(
        "--verify", action="store_true", help="verify the signature, issuer and expiry against the environment"
    )
    add_config_arguments(parser, ENV)
    parser.set_defaults(func=decode)


def _timestamp(value: object) -> str | None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    return datetime.datetime.fromtimestamp(value, datetime.timezone.utc).isoformat()


def _parse(text: str) -> CompactJws:
    text = text.strip()
    if text[:7].lower() == "bearer ":
        text = text[7:].strip()
    try:
        return CompactJws.parse(text)
    except MalformedJws as exc:
        raise CliError(f"not a JWT: {exc}") from None


def token(args: argparse.Namespace) -> ExitCode:
    """Fetch a token and print it (or its details as JSON)."""
    source = ConfigSource(args)
    signer = source.signer()
    fetched: list[TokenEvent] = []
    with source.blame_options():
        auth = MaskinportenAuth.from_config(source.config, signer=signer, on_event=fetched.append)
    try:
        access_token = auth.get_token()
    finally:
        auth.close()
    if not args.json:
        print(access_token)
        return ExitCode.OK
    expires_in = next((event.expires_in for event in fetched if event.expires_in is not None), None)
    document: dict[str, Any] = {
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": expires_in,
        "expires_at": None if expires_in is None else _timestamp(time.time() + expires_in),
    }
    try:
        jws = CompactJws.parse(access_token)
    except MalformedJws:
        warn("The access token is not a JWT; only the token and its lifetime are shown.")
    else:
        document.update(header=jws.header, claims=jws.claims)
    print_json(document)
    return ExitCode.OK


def decode(args: argparse.Namespace) -> ExitCode:
    """Print a JWT's header and claims; with ``--verify``, check it against the environment's JWKS."""
    jws = _parse(sys.stdin.read() if args.token == "-" else args.token)
    document: dict[str, Any] = {"header": jws.header, "claims": jws.claims}
    for claim in ("iat", "exp"):
        moment = _timestamp(jws.claims.get(claim))
        if moment is not None:
            document[f"{claim}_utc"] = moment
    if args.verify:
        source = ConfigSource(args)
        with source.blame_options():
            environment = source.config.environment()
        document["verified"] = verify(jws, environment)
    print_json(document)
    return ExitCode.OK


def _jwks(environment: Environment) -> list[dict[str, Any]]:
    try:
        environment = environment.resolved()
    except NetworkError as exc:
        raise CliError(str(exc), ExitCode.UNAVAILABLE) from None
    if environment.jwks_uri is None:
        raise CliError(f"the environment {environment.issuer} publishes no jwks_uri to verify against")
    try:
        response = httpx.get(environment.jwks_uri, timeout=10.0)
        response.raise_for_status()
        keys = response.json()["keys"]
    except httpx.HTTPError as exc:
        raise CliError(f"cannot fetch the JWKS {environment.jwks_uri}: {exc}", ExitCode.UNAVAILABLE) from None
    except (ValueError, KeyError, TypeError):
        raise CliError(f"{environment.jwks_uri} did not return a JWK set", ExitCode.UNAVAILABLE) from None
    if not isinstance(keys, list):
        raise CliError(f"{environment.jwks_uri} did not return a JWK set", ExitCode.UNAVAILABLE)
    return [key for key in keys if isinstance(key, dict)]


def verify(jws: CompactJws, environment: Environment) -> dict[str, Any]:
    """Check ``jws``'s signature against the environment's JWKS, its issuer and its lifetime.

    Returns what was checked; raises :class:`CliError` with :attr:`ExitCode.REFUSED` when a check fails.
    """
    algorithm = jws.header.get("alg")
    if algorithm not in RSA_ALGORITHMS:
        raise CliError(f"verification failed: unsupported alg {algorithm!r}", ExitCode.REFUSED)
    kid = jws.header.get("kid")
    candidates = [key for key in _jwks(environment) if key.get("kty") == "RSA" and key.get("kid") == kid]
    if not candidates:
        raise CliError(f"verification failed: no key with kid {kid!r} in {environment.jwks_uri}", ExitCode.REFUSED)
    if not any(jws.signature_is_valid(public_key_from_jwk(key), algorithm) for key in candidates):
        raise CliError("verification failed: the signature does not match the issuer's key", ExitCode.REFUSED)
    issuer = jws.claims.get("iss")
    if issuer != environment.issuer:
        raise CliError(f"verification failed: iss is {issuer!r}, expected {environment.issuer!r}", ExitCode.REFUSED)
    now = time.time()
    expiry = jws.claims.get("exp")
    if not isinstance(expiry, (int, float)):
        raise CliError("verification failed: the token has no numeric exp claim", ExitCode.REFUSED)
    if expiry + _LEEWAY < now:
        raise CliError(f"verification failed: the token expired at {_timestamp(expiry)}", ExitCode.REFUSED)
    not_before = jws.claims.get("nbf")
    if isinstance(not_before, (int, float)) and not_before - _LEEWAY > now:
        raise CliError(f"verification failed: the token is not valid before {_timestamp(not_before)}", ExitCode.REFUSED)
    return {"jwks_uri": environment.jwks_uri, "kid": kid, "issuer": issuer, "expires_in": round(expiry - now)}
