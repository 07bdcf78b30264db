"""Faults that tests queue on the emulator's token endpoint: errors, delays, broken bodies, dropped connections."""

from __future__ import annotations

import json
import secrets
import threading
import zlib
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Fault", "FaultQueue"]

_JSON = "application/json"
_HTML_ERROR_PAGE = (
    "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>"
    "<body><h1>Bad Gateway</h1><p>The proxy received an invalid response from an upstream server.</p></body></html>"
)


def _error_body(error: str, description: str) -> dict[str, str]:
    return {"error": error, "error_description": f"{description} (trace_id: {secrets.token_hex(16)})"}


@dataclass(frozen=True)
class Fault:
    """How to spoil one token request.

    - ``delay``: seconds the server waits before doing anything else (it still answers, unless told otherwise).
    - ``drop``: close the connection without an answer; ``reset``: abort it with a TCP reset.
    - ``status`` (with optional ``body`` and ``content_type``): answer with this instead of validating the grant.
      A dict or list body is sent as JSON, a str as UTF-8 text.
    - ``headers``: added to the answer, the fault's or, without ``status``, the normal one (e.g. a skewed ``Date``).
    - ``drip``: send the answer (the fault's or the normal one) one byte every ``drip`` seconds, from the status
      line on, or from the body on with ``drip_body_only``, until it is sent, the client hangs up or the emulator
      stops.

    The grant is recorded either way. The class methods build the common cases.
    """

    status: int | None = None
    body: bytes | str | dict[str, Any] | list[Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    content_type: str | None = None
    delay: float = 0.0
    drop: bool = False
    reset: bool = False
    drip: float = 0.0
    drip_body_only: bool = False

    def __post_init__(self) -> None:
        if self.delay < 0 or self.drip < 0:
            raise ValueError("delay and drip must not be negative")
        if (self.drop or self.reset) and self.drip:
            raise ValueError("a dropped or reset connection has no answer to drip")
        if self.drop and self.reset:
            raise ValueError("a connection is either dropped or reset, not both")
        if (self.drop or self.reset) and (self.status is not None or self.body is not None):
            raise ValueError("a dropped or reset connection has no status or body")
        if self.status is None and (self.body is not None or self.content_type is not None):
            raise ValueError("a fault body needs a status")

    @property
    def replaces_answer(self) -> bool:
        """Whether the grant goes unanswered or gets this fault's answer instead of being validated."""
        return self.drop or self.reset or self.status is not None

    def encoded_body(self) -> tuple[bytes, str | None]:
        """The body to send and its content type (None: no Content-Type header)."""
        if self.body is None:
            return b"", self.content_type
        if isinstance(self.body, (dict, list)):
            return json.dumps(self.body).encode("utf-8"), self.content_type or _JSON
        if isinstance(self.body, str):
            return self.body.encode("utf-8"), self.content_type or "text/plain; charset=utf-8"
        return self.body, self.content_type or "application/octet-stream"

    @classmethod
    def server_error(cls, status: int = 500, *, retry_after: int | str | None = None) -> Fault:
        """A 5xx with a Maskinporten-style JSON error body, optionally with ``Retry-After``."""
        headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
        return cls(status=status, body=_error_body("server_error", "Internal error"), headers=headers)

    @classmethod
    def rate_limited(cls, *, retry_after: int | str | None = None) -> Fault:
        """A 429 Too Many Requests, with ``Retry-After`` (seconds or an HTTP date) when given."""
        headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
        return cls(status=429, body=_error_body("too_many_requests", "Too many requests"), headers=headers)

    @classmethod
    def slow(cls, seconds: float) -> Fault:
        """Answer normally, but only after ``seconds``."""
        return cls(delay=seconds)

    @classmethod
    def drip_feed(cls, seconds_per_byte: float, *, body_only: bool = False) -> Fault:
        """A 200 token response, one byte every ``seconds_per_byte``: from the status line on, or the body only.

        The token in it is made up (no token is issued), and the body pads it to a kilobyte, so that even a fast
        drip outlasts any sensible timeout.
        """
        token = "eyJhbGciOiJSUzI1NiJ9.e30." + "c2ln" * 240
        body = {"access_token": token, "token_type": "Bearer", "expires_in": 120}
        return cls(status=200, body=body, drip=seconds_per_byte, drip_body_only=body_only)

    @classmethod
    def redirect(cls, location: str, status: int = 307) -> Fault:
        """A redirect to ``location`` (307 keeps the method and body: a client that follows it resends the grant)."""
        return cls(status=status, headers={"Location": location})

    @classmethod
    def gzip_bomb(cls, decoded_size: int) -> Fault:
        """A 200 whose gzip body (one member) inflates to ``decoded_size`` zero bytes, about 1000 times its size."""
        compressor = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
        block = bytes(1 << 20)
        parts = [compressor.compress(block) for _ in range(decoded_size // len(block))]
        parts.append(compressor.compress(bytes(decoded_size % len(block))))
        parts.append(compressor.flush())
        return cls(status=200, body=b"".join(parts), content_type=_JSON, headers={"Content-Encoding": "gzip"})

    @classmethod
    def dropped_connection(cls) -> Fault:
        """Close the connection without any answer."""
        return cls(drop=True)

    @classmethod
    def reset_connection(cls) -> Fault:
        """Abort the connection with a TCP reset."""
        return cls(reset=True)

    @classmethod
    def malformed_json(cls) -> Fault:
        """A 200 whose JSON body is cut off."""
        return cls(
            status=200, body='{"access_token": "eyJhbGciOiJSUzI1NiJ9.e30.c2ln", "token_type": "Bea', content_type=_JSON
        )

    @classmethod
    def html_error_page(cls, status: int = 502) -> Fault:
        """An HTML error page, as a proxy in front of Maskinporten would send."""
        return cls(status=status, body=_HTML_ERROR_PAGE, content_type="text/html; charset=utf-8")

    @classmethod
    def missing_access_token(cls) -> Fault:
        """A 200 JSON body without ``access_token``."""
        return cls(status=200, body={"token_type": "Bearer", "expires_in": 120, "scope": "unknown"})

    @classmethod
    def valid_looking_token(cls, access_token: str) -> Fault:
        """A 200 token response that is valid but for its ``access_token``, given verbatim (e.g. with CR/LF)."""
        return cls(status=200, body={"access_token": access_token, "token_type": "Bearer", "expires_in": 120})

    @classmethod
    def invalid_expires_in(cls, expires_in: Any = "soon") -> Fault:
        """A 200 with an ``access_token`` but an ``expires_in`` that is not a positive number."""
        body = {"access_token": "not-a-valid-token", "token_type": "Bearer", "expires_in": expires_in, "scope": ""}
        return cls(status=200, body=body)


@dataclass
class _Pending:
    fault: Fault
    remaining: int


class FaultQueue:
    """Faults waiting for token requests, first in first out, each for a number of requests. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: deque[_Pending] = deque()

    def add(self, fault: Fault, times: int) -> None:
        """Queue ``fault`` for the next ``times`` requests (after those already queued)."""
        if times < 1:
            raise ValueError("times must be at least 1")
        with self._lock:
            self._pending.append(_Pending(fault, times))

    def next(self) -> Fault | None:
        """The fault for the request now arriving, or None."""
        with self._lock:
            if not self._pending:
                return None
            pending = self._pending[0]
            pending.remaining -= 1
            if pending.remaining == 0:
                self._pending.popleft()
            return pending.fault

    def clear(self) -> None:
        """Drop every queued fault."""
        with self._lock:
            self._pending.clear()

    def __len__(self) -> int:
        with self._lock:
            return sum(pending.remaining for pending in self._pending)
