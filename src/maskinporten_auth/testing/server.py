"""The HTTP plumbing of the emulator: a threading HTTP/1.1 server that can drop, reset and close connections."""

from __future__ import annotations

import contextlib
import email.utils
import json
import logging
import socket
import struct
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, Protocol

from .altinn import EXCHANGE_PATH

__all__ = ["METADATA_PATH", "SELFSERVICE_PATH", "Answer", "EmulatorServer", "TokenApplication"]

METADATA_PATH = "/.well-known/oauth-authorization-server"
SELFSERVICE_PATH = "/api/v1/"
logger = logging.getLogger("maskinporten_auth.testing")


@dataclass(frozen=True)
class Answer:
    """What to send back: a status, a body and headers, or ``disconnect`` to drop or reset the connection.

    ``drip`` sends the answer one byte every ``drip`` seconds (from the body on with ``drip_body_only``).
    """

    status: int = 200
    body: bytes = b""
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    disconnect: Literal["drop", "reset"] | None = None
    drip: float = 0.0
    drip_body_only: bool = False

    @classmethod
    def json(cls, status: int, value: Any, headers: dict[str, str] | None = None) -> Answer:
        """A JSON answer."""
        return cls(status, json.dumps(value).encode("utf-8"), "application/json", headers or {})


class TokenApplication(Protocol):
    """What the server asks of the emulator."""

    def now(self) -> float:
        """The emulator's clock (POSIX seconds)."""

    def metadata(self) -> dict[str, Any]:
        """The authorization-server metadata document."""

    @property
    def jwks(self) -> dict[str, Any]:
        """The JWKS of the access-token signing key."""

    def answer_token_request(self, content_type: str | None, body: bytes) -> Answer:
        """Handle ``POST /token``."""

    def answer_exchange(self, authorization: str | None, query: str) -> Answer:
        """Handle ``GET`` of Altinn's Maskinporten token exchange."""

    def answer_selfservice(self, method: str, path: str, authorization: str | None, body: bytes) -> Answer:
        """Handle a request to Digdir's self-service API (``/api/v1/...``)."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: EmulatorServer

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        app = self.server.app
        if path.startswith(SELFSERVICE_PATH):
            self._selfservice("GET", path)
        elif path == METADATA_PATH:
            self._send(Answer.json(200, app.metadata()))
        elif path == "/jwk":
            self._send(Answer.json(200, app.jwks))
        elif path == "/token":
            self._send(Answer.json(405, {"error": "invalid_request", "error_description": "Use POST."}))
        elif path == EXCHANGE_PATH:
            query = self.path.split("?", 1)[1] if "?" in self.path else ""
            self._answer(app.answer_exchange(self.headers.get("Authorization"), query))
        else:
            self._send(Answer.json(404, {"error": "not_found", "error_description": f"No resource at {path}."}))

    def do_PUT(self) -> None:
        self._selfservice("PUT", self.path.split("?", 1)[0])

    def do_DELETE(self) -> None:
        self._selfservice("DELETE", self.path.split("?", 1)[0])

    def _selfservice(self, method: str, path: str) -> None:
        if not path.startswith(SELFSERVICE_PATH):
            self._send(Answer.json(404, {"error": "not_found", "error_description": f"No resource at {path}."}))
            return
        body = self._body()
        if body is not None:
            self._answer(self.server.app.answer_selfservice(method, path, self.headers.get("Authorization"), body))

    def _body(self) -> bytes | None:
        """The request body, or None after answering 411 when a body comes without a Content-Length."""
        length = self.headers.get("Content-Length")
        if length is None and self.command in ("GET", "DELETE"):
            return b""
        if length is None or not length.isdigit():
            self.close_connection = True
            self._send(Answer.json(411, {"error": "invalid_request", "error_description": "Content-Length needed."}))
            return None
        return self.rfile.read(int(length))

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        if path.startswith(SELFSERVICE_PATH):
            self._selfservice("POST", path)
            return
        if path != "/token":
            self._send(Answer.json(404, {"error": "not_found", "error_description": f"No resource at {self.path}."}))
            return
        body = self._body()
        if body is not None:
            self._answer(self.server.app.answer_token_request(self.headers.get("Content-Type"), body))

    def _answer(self, answer: Answer) -> None:
        """Send ``answer``, or drop or reset the connection as it says."""
        if answer.disconnect is not None:
            self.close_connection = True
            if answer.disconnect == "reset":
                self.server.reset_on_close(self.connection)
            return
        self._send(answer)

    def _send(self, answer: Answer) -> None:
        headers = {"Date": email.utils.formatdate(self.server.app.now(), usegmt=True), "Cache-Control": "no-store"}
        if answer.content_type is not None:
            headers["Content-Type"] = answer.content_type
        headers.update(answer.headers)
        headers["Content-Length"] = str(len(answer.body))
        reason = self.responses.get(answer.status, ("",))[0]
        lines = [f"{self.protocol_version} {answer.status} {reason}", *(f"{k}: {v}" for k, v in headers.items())]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if not answer.drip:
            self.wfile.write(head + answer.body)
        elif answer.drip_body_only:
            self.wfile.write(head)
            self._drip(answer.body, answer.drip)
        else:
            self._drip(head + answer.body, answer.drip)

    def _drip(self, data: bytes, interval: float) -> None:
        """Send ``data`` a byte at a time until it is sent, the client hangs up or the server closes."""
        self.close_connection = True
        for index in range(len(data)):
            try:
                self.wfile.write(data[index : index + 1])
            except OSError:
                return
            if self.server.closing.wait(interval):
                return

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s - " + format, self.address_string(), *args)


class EmulatorServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer that knows its open connections, so that closing it leaves no thread behind."""

    daemon_threads = False
    block_on_close = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: TokenApplication) -> None:
        self.app = app
        self._connections_lock = threading.Lock()
        self._open_connections: set[socket.socket] = set()
        self._connections_to_reset: set[socket.socket] = set()
        self.closing = threading.Event()
        super().__init__(address, _Handler)

    def track(self, connection: socket.socket) -> None:
        """Remember an accepted connection until its handler finishes."""
        with self._connections_lock:
            self._open_connections.add(connection)

    def untrack(self, connection: socket.socket) -> None:
        """Forget a connection whose handler finished."""
        with self._connections_lock:
            self._open_connections.discard(connection)

    def reset_on_close(self, connection: socket.socket) -> None:
        """Close ``connection`` with a TCP reset instead of an orderly shutdown."""
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with self._connections_lock:
            self._connections_to_reset.add(connection)

    def shutdown_request(self, request: Any) -> None:
        """Close a finished connection: abortively when a fault asked for a reset, else in order."""
        with self._connections_lock:
            reset = request in self._connections_to_reset
            self._connections_to_reset.discard(request)
        if reset:
            self.close_request(request)
        else:
            super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Log a client that hung up mid-exchange (as clients cutting off a fault's answer do) at debug level only."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            logger.debug("connection from %s closed by the client: %s", client_address, sys.exc_info()[1])
            return
        super().handle_error(request, client_address)

    def close_open_connections(self) -> None:
        """Shut down every open connection, waking handlers blocked on idle keep-alive connections or dripping."""
        self.closing.set()
        with self._connections_lock:
            connections = list(self._open_connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
