"""Keys and certificates for the core's tests, made fresh for each test session."""

from __future__ import annotations

import contextlib
import datetime
import http.server
import os
import secrets
import select
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from email.message import Message
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from maskinporten_auth import LocalKeySigner, MaskinportenAuth
from maskinporten_auth.jwk import b64url
from maskinporten_auth.jws import CompactJws
from maskinporten_auth.testing import MaskinportenEmulator

CertificateFactory = Callable[..., x509.Certificate]

#: The scope and supplier organisation that ``registered_client`` registers.
SCOPE = "nav:oppfolgingsplan/lps.write"
SUPPLIER = "313042995"


@pytest.fixture(scope="session")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def other_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


PrivateJwkFactory = Callable[..., dict[str, str]]


def _private_jwk(key: rsa.RSAPrivateKey, **extra: str) -> dict[str, str]:
    numbers = key.private_numbers()
    members = {
        "n": numbers.public_numbers.n,
        "e": numbers.public_numbers.e,
        "d": numbers.d,
        "p": numbers.p,
        "q": numbers.q,
        "dp": numbers.dmp1,
        "dq": numbers.dmq1,
        "qi": numbers.iqmp,
    }
    encoded = {name: b64url(value.to_bytes((value.bit_length() + 7) // 8, "big")) for name, value in members.items()}
    return {"kty": "RSA", **encoded, **extra}


@pytest.fixture
def make_secret() -> Callable[[], str]:
    """Return a function giving a new long random secret (password, passphrase) for leak scans.

    32 random characters: a short secret such as "pw" turns up by chance in random output (a base64url key
    thumbprint holds "pw" about one time in a hundred), so only a long one makes a match mean a leak.
    """
    return lambda: secrets.token_urlsafe(24)


@pytest.fixture(scope="session")
def private_jwk() -> PrivateJwkFactory:
    """Return a function giving an RSA key as a private JWK, as web key generators print it (extra members added)."""
    return _private_jwk


@pytest.fixture
def pem_file(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> Path:
    """``rsa_key`` as an unencrypted PKCS#8 PEM file."""
    path = tmp_path / "key.pem"
    path.write_bytes(
        rsa_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return path


@pytest.fixture
def signer(rsa_key: rsa.RSAPrivateKey) -> LocalKeySigner:
    return LocalKeySigner(rsa_key, kid="test-key-1")


@pytest.fixture(scope="session")
def make_certificate() -> CertificateFactory:
    """Return a function that issues a certificate for a public key, self-signed or by an issuer."""

    def issue(
        subject_key: rsa.RSAPrivateKey,
        common_name: str,
        *,
        issuer: tuple[x509.Certificate, rsa.RSAPrivateKey] | None = None,
        ca: bool = False,
        not_before: datetime.datetime | None = None,
        not_after: datetime.datetime | None = None,
    ) -> x509.Certificate:
        now = datetime.datetime.now(datetime.timezone.utc)
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "REGNSKAP AS"),
                x509.NameAttribute(NameOID.SERIAL_NUMBER, "313042995"),
            ]
        )
        issuer_name, signing_key = (name, subject_key) if issuer is None else (issuer[0].subject, issuer[1])
        return (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(issuer_name)
            .public_key(subject_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or now - datetime.timedelta(days=1))
            .not_valid_after(not_after or now + datetime.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(signing_key, hashes.SHA256())
        )

    return issue


@pytest.fixture(scope="session")
def certificate_chain(
    rsa_key: rsa.RSAPrivateKey, make_certificate: CertificateFactory
) -> tuple[list[x509.Certificate], rsa.RSAPrivateKey]:
    """A virksomhetssertifikat-like chain for ``rsa_key``: [leaf, intermediate, root], and the root's key."""
    root_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    root = make_certificate(root_key, "Test Root CA", ca=True)
    intermediate_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    intermediate = make_certificate(intermediate_key, "Test Issuing CA", issuer=(root, root_key), ca=True)
    leaf = make_certificate(rsa_key, "REGNSKAP AS", issuer=(intermediate, intermediate_key))
    return [leaf, intermediate, root], root_key


class RecordingSigner(LocalKeySigner):
    """A LocalKeySigner that keeps every grant it signs (as sent), and can be slowed down or held at a gate."""

    def __init__(self, private_key: rsa.RSAPrivateKey, *, kid: str, delay: float = 0.0) -> None:
        super().__init__(private_key, kid=kid)
        self.delay = delay
        self.grants: list[str] = []
        self.signing_threads: list[str] = []
        self._held: list[tuple[threading.Event, threading.Event]] = []
        self._lock = threading.Lock()

    def hold_next(self) -> tuple[threading.Event, threading.Event]:
        """Make the next signature wait: returns (entered, release); ``entered`` is set when it starts waiting."""
        gate = threading.Event(), threading.Event()
        with self._lock:
            self._held.append(gate)
        return gate

    def sign(self, signing_input: bytes) -> bytes:
        with self._lock:
            gate = self._held.pop(0) if self._held else None
        if gate is not None:
            entered, release = gate
            entered.set()
            assert release.wait(timeout=60), "a held signature was never released"
        if self.delay:
            time.sleep(self.delay)
        signature = super().sign(signing_input)
        with self._lock:
            self.grants.append(f"{signing_input.decode('ascii')}.{b64url(signature)}")
            self.signing_threads.append(threading.current_thread().name)
        return signature

    @property
    def jtis(self) -> list[str]:
        """The ``jti`` of every grant signed, in order."""
        return [CompactJws.parse(grant).claims["jti"] for grant in self.grants]


@pytest.fixture
def recording_signer(rsa_key: rsa.RSAPrivateKey) -> RecordingSigner:
    return RecordingSigner(rsa_key, kid="test-key-1")


@pytest.fixture
def registered_client(maskinporten_emulator: MaskinportenEmulator, rsa_key: rsa.RSAPrivateKey) -> str:
    """A new client id on the emulator, owned by SUPPLIER, for SCOPE, with ``rsa_key`` registered as test-key-1."""
    client_id = str(uuid.uuid4())
    maskinporten_emulator.register_client(
        client_id, orgno=SUPPLIER, scopes=[SCOPE], keys={"test-key-1": rsa_key.public_key()}
    )
    return client_id


@pytest.fixture
def make_auth(
    maskinporten_emulator: MaskinportenEmulator, recording_signer: RecordingSigner, registered_client: str
) -> Callable[..., MaskinportenAuth]:
    """Build a MaskinportenAuth for ``registered_client`` on the emulator; keywords override the defaults."""

    def make(**options: Any) -> MaskinportenAuth:
        options.setdefault("signer", recording_signer)
        options.setdefault("environment", maskinporten_emulator.environment)
        return MaskinportenAuth(registered_client, SCOPE, **options)

    return make


def token_from_forked_child(get_token: Callable[[], str], *, timeout: float = 30.0) -> str:
    """Fork; the child calls ``get_token()`` and hands the token back. Fails if the child hangs or fails."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            os.write(write_end, get_token().encode("ascii"))
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    token = ""
    try:
        ready, _, _ = select.select([read_end], [], [], timeout)
        token = os.read(read_end, 1 << 16).decode("ascii") if ready else ""
    finally:
        os.close(read_end)
        if not token:
            os.kill(pid, 9)
        _, status = os.waitpid(pid, 0)
    assert token, f"the child got no token within {timeout:.0f} s (deadlock?)"
    assert os.waitstatus_to_exitcode(status) == 0
    return token


@pytest.fixture
def unused_port() -> int:
    """A loopback port nothing listens on (bound and released), for connections that must be refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def answering(status: int, body: Callable[[Message, bytes], bytes]) -> Iterator[str]:
    """A loopback server that answers every GET and POST with ``status`` and the JSON ``body(headers, content)``.

    ``headers`` and ``content`` are the request's: a server that quotes what it was sent. Yields its base URL.
    """

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            answer = body(self.headers, self.rfile.read(int(self.headers.get("content-length") or 0)))
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        do_POST = do_GET

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
