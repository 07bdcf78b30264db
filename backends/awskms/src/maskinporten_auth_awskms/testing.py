"""LocalStack's KMS on loopback, for tests and benchmarks of the AWS KMS backend.

LocalStack (``localstack-core[runtime]``) pins packages that must not constrain the project, so it lives in a
virtual environment of its own: :func:`provision_localstack` creates it on first use with the running Python and
caches it under ``${XDG_CACHE_HOME:-~/.cache}/maskinporten-auth/``, keyed by the requirements and the Python
version. :func:`running_localstack` runs its KMS on 127.0.0.1 and a free port with a state directory of its own,
and kills its process group afterwards; :func:`make_kms_client` makes a boto3 client for it.
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

__all__ = [
    "LOCALSTACK_REQUIREMENTS",
    "REGION",
    "localstack_python",
    "make_kms_client",
    "provision_localstack",
    "running_localstack",
]

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
#: The region of the clients :func:`make_kms_client` makes.
REGION = "eu-north-1"

Say = Callable[[str], None]


def _say_nothing(message: str) -> None:
    """The default progress reporter: silence."""


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _venv_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    key = json.dumps([LOCALSTACK_REQUIREMENTS, sys.version, sys.base_prefix])
    return Path(base) / "maskinporten-auth" / f"localstack-4.11.1-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def localstack_python() -> Path | None:
    """The Python of LocalStack's provisioned virtual environment, or None if it is not provisioned yet."""
    venv = _venv_dir()
    return venv / "bin" / "python" if (venv / ".ready").exists() else None


def _run(command: list[str], *, log: Path, timeout: float, what: str) -> None:
    env = {name: value for name, value in os.environ.items() if name not in ("PYTHONPATH", "PYTHONHOME")}
    env.pop("VIRTUAL_ENV", None)
    with log.open("ab") as out:
        try:
            subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=env, timeout=timeout, check=True)  # noqa: S603 - our own arguments
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"{what} took longer than {timeout} s; log {log}:\n{_tail(log)}") from None
        except subprocess.CalledProcessError as exc:
            raise RuntimeError(f"{what} failed (exit {exc.returncode}); log {log}:\n{_tail(log)}") from None


def provision_localstack(say: Say = _say_nothing) -> Path:
    """Return the Python of LocalStack's own virtual environment, creating it first if needed (about a minute).

    Raises RuntimeError, with the end of the install log, when it cannot be created.
    """
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
        say(f"creating LocalStack's virtual environment {venv} with {sys.executable} (log: {log})")
        _run([sys.executable, "-m", "venv", str(venv)], log=log, timeout=VENV_TIMEOUT, what="python -m venv")
        say(f"pip install {' '.join(LOCALSTACK_REQUIREMENTS)} (about a minute; at most {PIP_TIMEOUT} s)")
        pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "--timeout", "60"]
        _run([*pip, *LOCALSTACK_REQUIREMENTS], log=log, timeout=PIP_TIMEOUT, what="pip install localstack")
        ready.write_text("\n".join(LOCALSTACK_REQUIREMENTS) + "\n")
        say(f"LocalStack's environment is ready after {time.monotonic() - started:.1f} s")
    return python


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _kms_ready(endpoint: str) -> bool:
    try:
        with urllib.request.urlopen(f"{endpoint}/_localstack/health", timeout=2) as response:  # noqa: S310 - loopback http
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


@contextlib.contextmanager
def running_localstack(python: Path, state: Path, say: Say = _say_nothing) -> Iterator[str]:
    """Run LocalStack's KMS with ``python`` (see :func:`provision_localstack`); yield its URL, and stop it after.

    ``state`` holds its state and log. Raises RuntimeError, with the log's end, if it does not become ready.
    """
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
    say(f"starting LocalStack {endpoint} (log: {log})")
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: S603 - our own arguments, no shell
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
        say(f"LocalStack's KMS is ready after {time.monotonic() - started:.1f} s")
        yield endpoint
    finally:
        _stop(process)
        say("LocalStack stopped")


def make_kms_client(endpoint: str, **config: Any) -> Any:
    """A boto3 KMS client for LocalStack at ``endpoint``, with fake credentials of its own, never the environment's.

    Keyword arguments go to ``botocore.config.Config``.
    """
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "kms",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(**config) if config else None,
    )
