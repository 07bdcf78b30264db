"""A stand-in for an API protected by Maskinporten, on loopback: it accepts only valid tokens with its scope.

Used by the demo (as NAV's follow-up-plan API) and by tests of the auth adapters. It verifies each bearer token's
RS256 signature against the emulator's JWKS with ``cryptography``, and its issuer, expiry and scope.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ..jwk import public_key_from_jwk
from ..jws import CompactJws, MalformedJws

__all__ = ["ApiCall", "ProtectedApi"]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the default of 5 resets connections under a burst of concurrent clients


@dataclass(frozen=True)
class ApiCall:
    """One request the API received: what it was, and the verified token's claims (None if rejected)."""

    method: str
    path: str
    status: int
    body: bytes
    claims: dict[str, Any] | None
    token: str | None


class ProtectedApi:
    """An HTTP API on 127.0.0.1 that answers 401 unless the request has a valid Maskinporten token for ``scope``.

    A valid request gets ``200`` (``201`` for POST) with JSON naming the token's ``consumer`` and ``supplier``.
    :meth:`revoke` makes the API reject a token as if it had been revoked, to test the 401 → refresh path.
    """

    def __init__(self, jwks: Mapping[str, Any] | Callable[[], Mapping[str, Any]], *, issuer: str, scope: str) -> None:
        self._jwks = jwks
        self.issuer = issuer
        self.scope = scope
        self.calls: list[ApiCall] = []
        self._revoked: set[str] = set()
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The API's base URL, e.g. ``http://127.0.0.1:54321``."""
        if self._server is None:
            raise RuntimeError("the API is not running; use it as a context manager")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def revoke(self, token: str) -> None:
        """Reject ``token`` from now on (401), as an API does with a revoked token."""
        with self._lock:
            self._revoked.add(token)

    def _verify(self, authorization: str | None) -> tuple[dict[str, Any] | None, str | None, str]:
        if not authorization or not authorization.startswith("Bearer "):
            return None, None, "missing bearer token"
        token = authorization[len("Bearer ") :]
        with self._lock:
            if token in self._revoked:
                return None, token, "token revoked"
        try:
            jws = CompactJws.parse(token)
        except MalformedJws:
            return None, token, "malformed token"
        jwks = self._jwks() if callable(self._jwks) else self._jwks
        key = next((k for k in jwks.get("keys", []) if k.get("kid") == jws.header.get("kid")), None)
        if key is None or jws.header.get("alg") != "RS256":
            return None, token, "unknown signing key"
        if not jws.signature_is_valid(public_key_from_jwk(key), "RS256"):
            return None, token, "invalid signature"
        claims = jws.claims
        if claims.get("iss") != self.issuer:
            return None, token, "wrong issuer"
        if not isinstance(claims.get("exp"), (int, float)) or claims["exp"] <= time.time():
            return None, token, "token expired"
        if self.scope not in str(claims.get("scope", "")).split():
            return None, token, f"token lacks scope {self.scope}"
        return claims, token, "ok"

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        claims, token, reason = self._verify(handler.headers.get("Authorization"))
        if claims is None:
            status = 401
            payload: dict[str, Any] = {"error": "invalid_token", "error_description": reason}
        else:
            status = 201 if handler.command == "POST" else 200
            payload = {"consumer": claims.get("consumer"), "supplier": claims.get("supplier"), "received": len(body)}
        with self._lock:
            self.calls.append(ApiCall(handler.command, handler.path, status, body, claims, token))
        data = json.dumps(payload).encode("utf-8")
        handler.send_response(status)
        if status == 401:
            handler.send_header("WWW-Authenticate", f'Bearer error="invalid_token", error_description="{reason}"')
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def __enter__(self) -> ProtectedApi:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                api._handle(self)

            do_POST = do_PUT = do_DELETE = do_GET

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = _Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="protected-api", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
