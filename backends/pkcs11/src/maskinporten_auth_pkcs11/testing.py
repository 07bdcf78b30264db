"""SoftHSM2 tokens in a temporary directory, for tests and benchmarks of the PKCS#11 backend.

SoftHSM2 is a Debian package (``softhsm2``), not a wheel: :func:`find_module` installs it when it is missing and
the process runs as root (CI does, on a fresh machine), and otherwise says why it is not available.
:func:`softhsm_tokens` initialises tokens with ``softhsm2-util`` before the module is first loaded (SoftHSM2 reads
its token directory in ``C_Initialize``), and :func:`new_key` generates keys through PKCS#11 itself,
non-extractable unless asked otherwise.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pkcs11
from cryptography.hazmat.primitives.asymmetric import rsa
from pkcs11 import Attribute, KeyType
from pkcs11 import exceptions as p11

from .module import TokenSelector

__all__ = ["PACKAGE", "SoftHsm", "TokenKey", "admin_session", "find_module", "new_key", "softhsm_tokens"]

PACKAGE = "softhsm2"
MODULE_PATHS = ("/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so")
INSTALL_TIMEOUT = 240  # seconds for apt-get update and install together, within pytest's 300-s test timeout


def _installed() -> str | None:
    found = next((path for path in MODULE_PATHS if Path(path).is_file()), None)
    return found if found is not None and shutil.which("softhsm2-util") else None


def _apt_get(*args: str, deadline: float) -> str | None:
    """Run apt-get; return None on success, else what went wrong."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        result = subprocess.run(["apt-get", *args], env=env, capture_output=True, text=True, check=False,  # noqa: S603, S607
                                timeout=max(deadline - time.monotonic(), 1))  # fmt: skip
    except subprocess.TimeoutExpired:
        return f"apt-get {' '.join(args)} took longer than {INSTALL_TIMEOUT} s"
    if result.returncode != 0:
        return f"apt-get {' '.join(args)} failed: {(result.stderr or result.stdout).strip()[-1500:]}"
    return None


def find_module() -> tuple[str | None, str]:
    """Return (the SoftHSM2 module path, "") or (None, why it is not available)."""
    found = _installed()
    if found is not None:
        return found, ""
    if shutil.which("apt-get") is None:
        return None, f"the Debian package {PACKAGE!r} is not installed and apt-get is not available here"
    if os.geteuid() != 0:
        return None, f"the Debian package {PACKAGE!r} is not installed; run: sudo apt-get install -y {PACKAGE}"
    deadline = time.monotonic() + INSTALL_TIMEOUT
    wait_for_lock = ("-o", f"DPkg::Lock::Timeout={INSTALL_TIMEOUT // 2}")  # another apt-get may be running
    for step in (("update",), (*wait_for_lock, "install", "-y", "--no-install-recommends", PACKAGE)):
        problem = _apt_get(*step, deadline=deadline)
        if problem is not None:
            return None, f"installing {PACKAGE!r}: {problem}"
    found = _installed()
    if found is None:
        return None, f"apt-get installed {PACKAGE!r} but no module was found at {', '.join(MODULE_PATHS)}"
    return found, ""


@dataclass(frozen=True)
class SoftHsm:
    """SoftHSM2 set up with tokens: the module, the token directory, the tokens' labels by role, and the user PIN."""

    module: str
    tokendir: Path
    labels: dict[str, str]
    pin: str

    def lib(self) -> Any:
        """The loaded PKCS#11 module (``pkcs11.lib``)."""
        return pkcs11.lib(self.module)

    def token(self, role: str) -> Any:
        """The token of a role."""
        return TokenSelector(label=self.labels[role]).find(self.lib())

    def pin_file(self, directory: Path) -> Path:
        """Write the user PIN to a new file in ``directory`` (mode 600) and return its path."""
        path = directory / f"pin-{uuid.uuid4().hex[:8]}"
        path.write_text(self.pin + "\n")
        path.chmod(0o600)
        return path

    def token_directory(self, role: str) -> Path:
        """The directory SoftHSM2 keeps a token in: named by a UUID that ends with the token's serial."""
        serial = self.token(role).serial.decode().lower()
        (found,) = [path for path in self.tokendir.iterdir() if path.name.replace("-", "").endswith(serial)]
        return found


@contextlib.contextmanager
def softhsm_tokens(module: str, home: Path, roles: Sequence[str] = ("main",)) -> Iterator[SoftHsm]:
    """Initialise one token per role in ``home``, with ``SOFTHSM2_CONF`` pointing there while the context lasts."""
    tokendir = home / "tokens"
    tokendir.mkdir()
    conf = home / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokendir}\nobjectstore.backend = file\nlog.level = ERROR\n")
    pin = secrets.token_urlsafe(48)  # long and random: finding it in a message means a leak
    labels = {role: f"mp-{role}-{uuid.uuid4().hex[:6]}" for role in roles}
    previous = os.environ.get("SOFTHSM2_CONF")
    os.environ["SOFTHSM2_CONF"] = str(conf)
    try:
        for label in labels.values():
            subprocess.run(  # noqa: S603 - our own arguments, no shell
                ["softhsm2-util", "--init-token", "--free", "--label", label,  # noqa: S607 - found on PATH
                 "--so-pin", secrets.token_urlsafe(16), "--pin", pin],
                check=True, capture_output=True, text=True,
            )  # fmt: skip
        yield SoftHsm(module, tokendir, labels, pin)
    finally:
        if previous is None:
            os.environ.pop("SOFTHSM2_CONF", None)
        else:
            os.environ["SOFTHSM2_CONF"] = previous


@contextlib.contextmanager
def admin_session(softhsm: SoftHsm, role: str) -> Iterator[Any]:
    """A read-write session of its own, logged in (or sharing the process's login), closed after."""
    token = softhsm.token(role)
    try:
        session = token.open(rw=True, user_pin=softhsm.pin)
    except p11.UserAlreadyLoggedIn:
        session = token.open(rw=True)
    try:
        yield session
    finally:
        session.close()  # logs the token out again if this session logged it in


@dataclass(frozen=True)
class TokenKey:
    """A key pair generated on a token: where it is, and its public key as read from the token's public key object."""

    role: str
    label: str
    id: bytes
    public_key: rsa.RSAPublicKey


def _public_key(public_object: Any) -> rsa.RSAPublicKey:
    modulus = int.from_bytes(public_object[Attribute.MODULUS], "big")
    exponent = int.from_bytes(public_object[Attribute.PUBLIC_EXPONENT], "big")
    return rsa.RSAPublicNumbers(exponent, modulus).public_key()


def new_key(
    softhsm: SoftHsm,
    role: str = "main",
    *,
    bits: int = 2048,
    extractable: bool = False,
    sensitive: bool = True,
    label: str | None = None,
) -> TokenKey:
    """Generate an RSA key pair on a role's token through PKCS#11 (non-extractable and sensitive by default)."""
    label = label or f"mp-{uuid.uuid4().hex[:8]}"
    key_id = secrets.token_bytes(4)
    with admin_session(softhsm, role) as session:
        public, _private = session.generate_keypair(
            KeyType.RSA, bits, label=label, id=key_id, store=True,
            private_template={Attribute.EXTRACTABLE: extractable, Attribute.SENSITIVE: sensitive,
                              Attribute.SIGN: True},
        )  # fmt: skip
        return TokenKey(role, label, key_id, _public_key(public))
