"""``maskinporten keygen`` and ``maskinporten jwk``: create a key safely, and show the public key to register."""

from __future__ import annotations

import argparse
import os
import shlex
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ..config import KEY, KID
from ..jwk import jwk_thumbprint, rsa_public_jwk
from ..signer import ALGORITHMS
from ._common import (
    CliError,
    ConfigSource,
    ExitCode,
    add_config_arguments,
    print_json,
    public_key_file,
    read_public_key,
    read_secret,
    warn,
)

__all__ = ["configure_jwk", "configure_keygen"]

KEY_SIZES = (2048, 3072, 4096)
DEFAULT_KEY_SIZE = 3072
_PUBLIC_EXPONENT = 65537

_KEYGEN_EPILOG = """\
The private key never leaves this machine: it is written with owner-only permissions (0600), and the command
refuses to overwrite an existing file. Standard output gets only the public JWK, ready to register on the
integration in Samarbeidsportalen (or its API); the next steps go to standard error.

examples:
  maskinporten keygen secrets/maskinporten.pem > maskinporten.jwk.json
  maskinporten keygen --encrypt key.pem                       # asks for a passphrase twice
  MY_PASS=... maskinporten keygen --passphrase-env MY_PASS key.pem
"""

_JWK_EPILOG = """\
The key may be any key URI (file:, pkcs12:, awskms:, vault-transit:, azurekv:, pkcs11:) or a local file, also one
holding only a public key (a JWK or PEM). Only public key material is printed. Without a kid, the key's RFC 7638
thumbprint is suggested and used.

examples:
  maskinporten jwk key.pem --kid 2026-01
  maskinporten jwk awskms:///alias/maskinporten --set
  maskinporten jwk 'vault-transit://transit/maskinporten?version=2' --pem
  maskinporten jwk 'pkcs11:token=hsm;object=mp?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:pin.txt'
"""


def configure_keygen(parser: argparse.ArgumentParser) -> None:
    """Describe ``keygen`` and add its arguments."""
    parser.description = "Create an RSA private key for Maskinporten and print its public JWK."
    parser.epilog = _KEYGEN_EPILOG
    parser.add_argument("path", type=Path, help="where to write the private key (PEM, PKCS#8)")
    parser.add_argument(
        "--bits", type=int, choices=KEY_SIZES, default=DEFAULT_KEY_SIZE, help="key size (default: %(default)s)"
    )
    parser.add_argument("--kid", help="the key id to put in the JWK (default: the key's thumbprint)")
    parser.add_argument("--alg", choices=ALGORITHMS, default="RS256", help="default: %(default)s")
    secret = parser.add_argument_group(
        "encryption", "Encrypt the key with a passphrase. The passphrase is never taken from the command line."
    )
    secret.add_argument("--encrypt", action="store_true", help="ask for a passphrase on the terminal")
    secret.add_argument("--passphrase-env", metavar="VARIABLE", help="read the passphrase from this variable")
    secret.add_argument("--passphrase-file", metavar="PATH", help="read the passphrase from this file")
    parser.set_defaults(func=keygen)


def configure_jwk(parser: argparse.ArgumentParser) -> None:
    """Describe ``jwk`` and add its arguments."""
    parser.description = "Print the public key of any key URI, to register it on a Maskinporten integration."
    parser.epilog = _JWK_EPILOG
    parser.add_argument("key_argument", nargs="?", metavar="KEY", help="a key URI or file [$MASKINPORTEN_KEY]")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--set", action="store_true", help='print a JWK set: {"keys": [...]}')
    output.add_argument("--pem", action="store_true", help="print the public key as PEM (SubjectPublicKeyInfo)")
    add_config_arguments(parser, KEY, KID)
    parser.set_defaults(func=jwk)


def _passphrase(args: argparse.Namespace) -> bytes | None:
    if args.passphrase_env is not None and args.passphrase_file is not None:
        raise CliError("give --passphrase-env or --passphrase-file, not both")
    if not (args.encrypt or args.passphrase_env or args.passphrase_file):
        return None
    return read_secret(
        env=args.passphrase_env, file=args.passphrase_file, prompt="Passphrase for the new key: ", confirm=True
    )


def _create_parents(path: Path) -> list[Path]:
    """Create the missing directories above ``path``, owner-only (0700); return them, outermost first."""
    missing = [parent for parent in reversed(path.parents) if not parent.exists()]
    for directory in missing:
        try:
            directory.mkdir(mode=0o700)
        except OSError as exc:
            _remove_directories(missing)
            raise CliError(f"cannot create the directory {directory}: {exc.strerror}") from None
    return missing


def _remove_directories(directories: list[Path]) -> None:
    """Remove the directories this command created, innermost first, if they are still empty."""
    for directory in reversed(directories):
        try:
            directory.rmdir()
        except OSError:
            return


def _write_private(path: Path, data: bytes) -> None:
    """Create ``path`` (and missing directories) holding ``data``, mode 0600; never replace an existing file.

    On failure nothing is left behind: no key, partial or whole, and no directory this created.
    """
    created = _create_parents(path)
    try:
        _write_new_file(path, data)
    except CliError:
        _remove_directories(created)
        raise


def _write_new_file(path: Path, data: bytes) -> None:
    """Write and sync ``data`` under a temporary name beside ``path``, then link it to ``path``.

    The link fails if ``path`` exists, and no reader ever sees a partial key.
    """
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise CliError(f"cannot create {path}: {exc.strerror}") from None
    try:
        os.fchmod(descriptor, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.link(temporary, path)
    except FileExistsError:
        raise CliError(f"{path} exists; refusing to overwrite a key (choose another path or remove it)") from None
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror}") from None
    finally:
        temporary.unlink(missing_ok=True)


def keygen(args: argparse.Namespace) -> ExitCode:
    """Create the key, write it owner-only, and print its public JWK."""
    passphrase = _passphrase(args)
    if args.path.exists():
        raise CliError(f"{args.path} exists; refusing to overwrite a key (choose another path or remove it)")
    key = rsa.generate_private_key(public_exponent=_PUBLIC_EXPONENT, key_size=args.bits)
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    )
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    _write_private(args.path, pem)
    kid = args.kid or jwk_thumbprint(key.public_key())
    print_json(rsa_public_jwk(key.public_key(), kid=kid, alg=args.alg))
    uri = args.path.resolve().as_uri()
    protection = "encrypted with your passphrase" if passphrase else "NOT encrypted"
    warn(
        f"Wrote a {args.bits}-bit RSA private key to {args.path} (mode 0600, {protection}).\n"
        f"{'Key id' if args.kid else 'Suggested kid (the key thumbprint)'}: {kid}\n"
        "Next: register the public JWK above on your integration (Samarbeidsportalen, or its API). If the portal\n"
        "assigns its own kid, use that one. Then point the library at the key:\n"
        f"  export MASKINPORTEN_KEY={shlex.quote(uri)}\n"
        f"  export MASKINPORTEN_KID={shlex.quote(kid)}"
    )
    return ExitCode.OK


def jwk(args: argparse.Namespace) -> ExitCode:
    """Print the public key of the configured key."""
    shown_as: dict[str, str] = {}
    if args.key_argument is not None:
        if args.key is not None:
            raise CliError("give the key either as an argument or with --key, not both")
        args.key = args.key_argument
        shown_as["--key"] = "KEY"
    source = ConfigSource(args, shown_as=shown_as)
    public_file = public_key_file(source.config.get(KEY))
    if public_file is not None:  # a public JWK or PEM: nothing to sign with, and nothing more is needed
        public_key, members = read_public_key(public_file)
        kid, algorithm, x5c = source.config.get(KID) or members.get("kid"), members.get("alg", "RS256"), None
    else:
        signer = source.signer()
        public_key, kid, algorithm, x5c = signer.public_key(), signer.kid, signer.algorithm, signer.x5c
    if args.pem:
        pem = public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        print(pem.decode("ascii"), end="")
        return ExitCode.OK
    if kid is None and x5c is None:
        kid = jwk_thumbprint(public_key)
        warn(f"No kid configured; using the key's thumbprint as kid: {kid}")
    document = rsa_public_jwk(public_key, kid=kid, alg=algorithm, x5c=x5c)
    print_json({"keys": [document]} if args.set else document)
    return ExitCode.OK
