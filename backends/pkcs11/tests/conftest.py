"""A real PKCS#11 token for the PKCS#11 backend's tests: SoftHSM2 (Debian package softhsm2) in a temporary directory.

The session fixture (through :func:`find_module`) installs the package when it is missing and the tests run as
root (CI does, on a fresh machine); otherwise every test here skips with a message naming the package. Tokens are
initialised with ``softhsm2-util`` before the module is first loaded (SoftHSM2 reads its token directory in
``C_Initialize``), and keys are generated through PKCS#11 itself, non-extractable unless a test asks otherwise.

Fixture names start with ``softhsm_`` because every backend's tests run in one pytest session.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pkcs11
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from maskinporten_auth_pkcs11 import Pkcs11Signer
from maskinporten_auth_pkcs11.module import TokenSelector
from pkcs11 import Attribute, CertificateType, KeyType, ObjectClass
from pkcs11 import exceptions as p11

from maskinporten_auth.testing import issue_certificate_chain

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
        result = subprocess.run(["apt-get", *args], env=env, capture_output=True, text=True, check=False,
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


#: The tokens of the session, by role. "main" holds the shared keys; nobody ever logs in to "nologin" with the
#: right PIN (SoftHSM2 does not check a second login's PIN); "removable" has its directory deleted by a test.
TOKENS = ("main", "nologin", "removable")
_HASHES = {"RS256": hashes.SHA256, "RS384": hashes.SHA384, "RS512": hashes.SHA512}


@dataclass(frozen=True)
class SoftHsm:
    """SoftHSM2 set up for the session: the module, the token directory, the tokens' labels and the user PIN."""

    module: str
    tokendir: Path
    labels: dict[str, str]
    pin: str

    def lib(self) -> Any:
        return pkcs11.lib(self.module)

    def token(self, role: str) -> Any:
        return TokenSelector(label=self.labels[role]).find(self.lib())

    def pin_file(self, directory: Path) -> Path:
        path = directory / f"pin-{uuid.uuid4().hex[:8]}"
        path.write_text(self.pin + "\n")
        path.chmod(0o600)
        return path

    def token_directory(self, role: str) -> Path:
        """The directory SoftHSM2 keeps a token in: named by a UUID that ends with the token's serial."""
        serial = self.token(role).serial.decode().lower()
        (found,) = [path for path in self.tokendir.iterdir() if path.name.replace("-", "").endswith(serial)]
        return found


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SoftHsm]:
    """SoftHSM2 with the session's tokens in a temporary directory; SOFTHSM2_CONF points at it."""
    module, why = find_module()
    if module is None:
        pytest.skip(f"PKCS#11 tests need SoftHSM2 (Debian package {PACKAGE!r}): {why}")
    home = tmp_path_factory.mktemp("softhsm")
    tokendir = home / "tokens"
    tokendir.mkdir()
    conf = home / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokendir}\nobjectstore.backend = file\nlog.level = ERROR\n")
    pin = secrets.token_urlsafe(48)  # long and random: finding it in a message means a leak
    labels = {role: f"mp-{role}-{uuid.uuid4().hex[:6]}" for role in TOKENS}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SOFTHSM2_CONF", str(conf))
        for label in labels.values():
            subprocess.run(
                ["softhsm2-util", "--init-token", "--free", "--label", label,
                 "--so-pin", secrets.token_urlsafe(16), "--pin", pin],
                check=True, capture_output=True, text=True,
            )  # fmt: skip
        yield SoftHsm(module, tokendir, labels, pin)


@contextlib.contextmanager
def _admin_session(softhsm: SoftHsm, role: str) -> Iterator[Any]:
    """A read-write session of the test's own, logged in (or sharing the process's login), closed after."""
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


@pytest.fixture(scope="session")
def softhsm_new_key(softhsm: SoftHsm) -> Callable[..., TokenKey]:
    """Generate an RSA key pair on a token through PKCS#11: ``softhsm_new_key("main", extractable=False)``."""

    def generate(role: str = "main", *, bits: int = 2048, extractable: bool = False, sensitive: bool = True,
                 label: str | None = None) -> TokenKey:  # fmt: skip
        label = label or f"mp-{uuid.uuid4().hex[:8]}"
        key_id = secrets.token_bytes(4)
        with _admin_session(softhsm, role) as session:
            public, _private = session.generate_keypair(
                KeyType.RSA, bits, label=label, id=key_id, store=True,
                private_template={Attribute.EXTRACTABLE: extractable, Attribute.SENSITIVE: sensitive,
                                  Attribute.SIGN: True},
            )  # fmt: skip
            return TokenKey(role, label, key_id, _public_key(public))

    return generate


@pytest.fixture(scope="session")
def softhsm_key(softhsm_new_key: Callable[..., TokenKey]) -> TokenKey:
    """The session's shared non-extractable 2048-bit key on the main token."""
    return softhsm_new_key("main")


@pytest.fixture(scope="session")
def softhsm_store_certificates(softhsm: SoftHsm) -> Callable[..., None]:
    """Store certificates on a token as CKO_CERTIFICATE objects: ``store(key, leaf, ca)`` (leaf with the key's id)."""

    def store(key: TokenKey, leaf: x509.Certificate, *others: x509.Certificate) -> None:
        with _admin_session(softhsm, key.role) as session:
            for certificate, key_id, label in [(leaf, key.id, key.label)] + [
                (cert, secrets.token_bytes(4), f"ca-{uuid.uuid4().hex[:6]}") for cert in others
            ]:
                session.create_object({
                    Attribute.CLASS: ObjectClass.CERTIFICATE,
                    Attribute.CERTIFICATE_TYPE: CertificateType.X_509,
                    Attribute.TOKEN: True,
                    Attribute.LABEL: label,
                    Attribute.ID: key_id,
                    Attribute.SUBJECT: certificate.subject.public_bytes(),
                    Attribute.VALUE: certificate.public_bytes(serialization.Encoding.DER),
                })  # fmt: skip

    return store


@pytest.fixture(scope="session")
def softhsm_issue_chain() -> Callable[[rsa.RSAPublicKey], tuple[x509.Certificate, x509.Certificate]]:
    """Issue a leaf certificate for a public key from a fresh CA: (leaf, CA certificate)."""

    def issue(public_key: rsa.RSAPublicKey) -> tuple[x509.Certificate, x509.Certificate]:
        leaf, root = issue_certificate_chain(public_key)
        return leaf, root

    return issue


@pytest.fixture
def softhsm_signer(softhsm: SoftHsm) -> Callable[..., Pkcs11Signer]:
    """Make a Pkcs11Signer for a token key with the right PIN: ``softhsm_signer(key, kid="k", algorithm=...)``."""

    def make(key: TokenKey, **options: Any) -> Pkcs11Signer:
        options.setdefault("pin", softhsm.pin)
        options.setdefault("kid", "pkcs11-test")
        return Pkcs11Signer(softhsm.module, token_label=softhsm.labels[key.role], key_label=key.label, **options)

    return make


def _verify(public_key: rsa.RSAPublicKey, algorithm: str, data: bytes, signature: bytes) -> None:
    public_key.verify(signature, data, padding.PKCS1v15(), _HASHES[algorithm]())


@pytest.fixture(scope="session")
def softhsm_verify() -> Callable[[rsa.RSAPublicKey, str, bytes, bytes], None]:
    """Verify an RSASSA-PKCS1-v1_5 signature with cryptography (never with the token): (key, alg, data, sig)."""
    return _verify


@pytest.fixture(scope="session")
def softhsm_remove_token(softhsm: SoftHsm) -> Callable[[str], None]:
    """Take a token away for good, as pulling a smart card does: delete its directory."""
    return lambda role: shutil.rmtree(softhsm.token_directory(role))
