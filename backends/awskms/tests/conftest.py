"""LocalStack's KMS for the AWS KMS backend's tests: provisioned, started and stopped by the test session.

LocalStack (``localstack-core[runtime]``) pins packages that must not constrain the project, so it lives in a
virtual environment of its own, created on first use with the Python that runs pytest and cached under
``${XDG_CACHE_HOME:-~/.cache}/maskinporten-auth/``, keyed by the requirements and the Python version. The server
runs on 127.0.0.1 on a free port with a temporary state directory, and its process group is killed at the end.

Fixture names start with ``kms_`` so they never clash with the other backends' fixtures.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key

from maskinporten_auth.testing import issue_certificate_chain

LOCALSTACK_REQUIREMENTS = (
    "localstack-core[runtime]==4.11.1",
    "cbor2<6",
    "cryptography<47",
    "pyopenssl<26",
    "service-identity",
)
VENV_TIMEOUT = 120
PIP_TIMEOUT = 600
STARTUP_TIMEOUT = 90
STOP_TIMEOUT = 15
REGION = "eu-north-1"
HASHES: dict[str, type[hashes.HashAlgorithm]] = {"RS256": hashes.SHA256, "RS384": hashes.SHA384, "RS512": hashes.SHA512}


def _say(config: pytest.Config, message: str) -> None:
    """Print past pytest's output capture, so a first run shows what it is doing."""
    capture = config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        print(f"[kms-localstack] {message}", file=sys.stderr, flush=True)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "maskinporten-auth"


def _venv_dir() -> Path:
    key = json.dumps([LOCALSTACK_REQUIREMENTS, sys.version, sys.base_prefix])
    return _cache_root() / f"localstack-4.11.1-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def _run(command: list[str], *, log: Path, timeout: float, what: str) -> None:
    env = {name: value for name, value in os.environ.items() if name not in ("PYTHONPATH", "PYTHONHOME")}
    env.pop("VIRTUAL_ENV", None)
    with log.open("ab") as out:
        try:
            subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=env, timeout=timeout, check=True)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"{what} took longer than {timeout} s; log {log}:\n{_tail(log)}") from None
        except subprocess.CalledProcessError as exc:
            raise RuntimeError(f"{what} failed (exit {exc.returncode}); log {log}:\n{_tail(log)}") from None


def provision_localstack(config: pytest.Config) -> Path:
    """Return the Python of LocalStack's own virtual environment, creating it first if needed."""
    venv = _venv_dir()
    python = venv / "bin" / "python"
    ready = venv / ".ready"
    venv.parent.mkdir(parents=True, exist_ok=True)
    with (venv.parent / ".localstack.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test run may be provisioning the same environment
        if ready.exists():
            return python
        shutil.rmtree(venv, ignore_errors=True)  # a half-built environment from an interrupted run
        log = venv.parent / f"{venv.name}.log"
        log.unlink(missing_ok=True)
        started = time.monotonic()
        _say(config, f"creating LocalStack's virtual environment {venv} with {sys.executable} (log: {log})")
        _run([sys.executable, "-m", "venv", str(venv)], log=log, timeout=VENV_TIMEOUT, what="python -m venv")
        _say(config, f"pip install {' '.join(LOCALSTACK_REQUIREMENTS)} (about a minute; at most {PIP_TIMEOUT} s)")
        pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "--timeout", "60"]
        _run([*pip, *LOCALSTACK_REQUIREMENTS], log=log, timeout=PIP_TIMEOUT, what="pip install localstack")
        ready.write_text("\n".join(LOCALSTACK_REQUIREMENTS) + "\n")
        _say(config, f"LocalStack's environment is ready after {time.monotonic() - started:.1f} s")
    return python


_PROVISIONED = pytest.StashKey["Path | RuntimeError"]()


def pytest_collection_finish(session: pytest.Session) -> None:
    """Provision LocalStack once collection is done, if a selected test needs it.

    Here, and not in the fixture, so that the first run's install is not counted in a test's timeout.
    """
    if any("kms_endpoint" in getattr(item, "fixturenames", ()) for item in session.items):
        try:
            session.config.stash[_PROVISIONED] = provision_localstack(session.config)
        except RuntimeError as exc:
            session.config.stash[_PROVISIONED] = exc


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _kms_ready(endpoint: str) -> bool:
    try:
        with urllib.request.urlopen(f"{endpoint}/_localstack/health", timeout=2) as response:
            services = json.load(response).get("services", {})
    except (OSError, ValueError):
        return False
    return services.get("kms") in ("available", "running")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """End LocalStack's whole process group: politely, then by force."""
    for sig, wait in ((signal.SIGTERM, STOP_TIMEOUT), (signal.SIGKILL, 5)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # children that outlived the leader


@pytest.fixture(scope="session")
def kms_endpoint(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a LocalStack KMS running for this test session."""
    python = pytestconfig.stash.get(_PROVISIONED, None) or provision_localstack(pytestconfig)
    if isinstance(python, RuntimeError):
        pytest.fail(f"LocalStack could not be provisioned: {python}", pytrace=False)
    state = tmp_path_factory.mktemp("localstack")
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(state),
        "TMPDIR": str(state),
        "GATEWAY_LISTEN": f"127.0.0.1:{port}",
        "SERVICES": "kms",
        "EAGER_SERVICE_LOADING": "1",
        "SKIP_SSL_CERT_DOWNLOAD": "1",
        "DNS_ADDRESS": "0",
        "DISABLE_EVENTS": "1",
        "LOCALSTACK_VOLUME_DIR": str(state / "volume"),
        "FILESYSTEM_ROOT": str(state / "filesystem"),
    }
    log = state / "localstack.log"
    started = time.monotonic()
    _say(pytestconfig, f"starting LocalStack {endpoint} (log: {log})")
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(python), "-m", "localstack.runtime.main"],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=state,
            start_new_session=True,
        )
    try:
        while not _kms_ready(endpoint):
            if process.poll() is not None:
                raise RuntimeError(f"LocalStack exited with {process.returncode}; log {log}:\n{_tail(log)}")
            if time.monotonic() - started > STARTUP_TIMEOUT:
                raise RuntimeError(f"LocalStack's KMS not ready after {STARTUP_TIMEOUT} s; log {log}:\n{_tail(log)}")
            time.sleep(0.2)
        _say(pytestconfig, f"LocalStack's KMS is ready after {time.monotonic() - started:.1f} s")
        yield endpoint
    finally:
        _stop(process)
        _say(pytestconfig, "LocalStack stopped")


@pytest.fixture(scope="session")
def kms_make_client(kms_endpoint: str) -> Callable[..., Any]:
    """Make a boto3 KMS client for LocalStack with fake credentials of its own, never the environment's.

    Keyword arguments go to ``botocore.config.Config``.
    """

    def make(**config: Any) -> Any:
        return boto3.session.Session().client(
            "kms",
            endpoint_url=kms_endpoint,
            region_name=REGION,
            aws_access_key_id="test",
            aws_secret_access_key="test",
            config=Config(**config) if config else None,
        )

    return make


@pytest.fixture(scope="session")
def kms_client(kms_make_client: Callable[..., Any]) -> Any:
    """A boto3 KMS client talking to LocalStack."""
    return kms_make_client()


@pytest.fixture(scope="session")
def kms_create_key(kms_client: Any) -> Callable[..., str]:
    """Create a KMS key (``kms_create_key("RSA_3072")``, ``usage="ENCRYPT_DECRYPT"``) and return its key id."""

    def create(spec: str = "RSA_2048", usage: str = "SIGN_VERIFY", alias: str | None = None) -> str:
        key_id: str = kms_client.create_key(KeySpec=spec, KeyUsage=usage)["KeyMetadata"]["KeyId"]
        if alias is not None:
            kms_client.create_alias(AliasName=alias, TargetKeyId=key_id)
        return key_id

    return create


@pytest.fixture(scope="session")
def kms_rsa_keys(kms_create_key: Callable[..., str]) -> dict[str, str]:
    """One RSA SIGN_VERIFY key id per key spec, shared by the tests that only sign with them."""
    return {spec: kms_create_key(spec) for spec in ("RSA_2048", "RSA_3072", "RSA_4096")}


@pytest.fixture(scope="session")
def kms_public_key(kms_client: Any) -> Callable[[str], rsa.RSAPublicKey]:
    """Fetch a key's public half straight from GetPublicKey, independently of the code under test."""

    def fetch(key_id: str) -> rsa.RSAPublicKey:
        key = load_der_public_key(kms_client.get_public_key(KeyId=key_id)["PublicKey"])
        assert isinstance(key, rsa.RSAPublicKey)
        return key

    return fetch


@pytest.fixture(scope="session")
def kms_assert_signature() -> Callable[[rsa.RSAPublicKey, bytes, bytes, str], None]:
    """Verify an RS256/384/512 signature locally with ``cryptography`` (never with kms.verify)."""

    def check(public_key: rsa.RSAPublicKey, signature: bytes, message: bytes, algorithm: str) -> None:
        public_key.verify(signature, message, padding.PKCS1v15(), HASHES[algorithm]())

    return check


def _chain(leaf_public_key: rsa.RSAPublicKey, intermediates: int = 0) -> tuple[bytes, list[x509.Certificate]]:
    chain = issue_certificate_chain(leaf_public_key, intermediates=intermediates, subject="313042995 virksomhet")
    return b"".join(cert.public_bytes(serialization.Encoding.PEM) for cert in chain), chain


@pytest.fixture(scope="session")
def kms_certificate_chain() -> Callable[..., tuple[bytes, list[x509.Certificate]]]:
    """Certify a public key (a KMS key's) by a local CA through ``intermediates`` CAs.

    Returns the chain as PEM and as certificates, leaf first and the self-signed root last.
    """
    return _chain
