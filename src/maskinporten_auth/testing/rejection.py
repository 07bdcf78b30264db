"""The error answers the emulator gives, shaped like Maskinporten's."""

from __future__ import annotations

import secrets
from typing import Any

__all__ = ["Rejection"]


class Rejection(Exception):
    """A token request the emulator refuses.

    ``status`` is the HTTP status, ``error`` the OAuth error code, ``description`` Maskinporten's text (without the
    trace id) and ``code`` the MP code (``"MP-251"``) or None where Maskinporten documents none.
    """

    def __init__(self, status: int, error: str, description: str, code: str | None = None) -> None:
        super().__init__(f"{status} {error} {code or ''}: {description}")
        self.status = status
        self.error = error
        self.description = description
        self.code = code

    @classmethod
    def invalid_grant(cls, description: str, code: str | None = None) -> Rejection:
        """A 400 ``invalid_grant``."""
        return cls(400, "invalid_grant", description, code)

    @classmethod
    def authentication_failed(cls, detail: str, code: str | None = None) -> Rejection:
        """A 400 ``invalid_grant`` whose description starts like Maskinporten's client-authentication failures."""
        return cls.invalid_grant(f"Invalid assertion. Client authentication failed. {detail}", code)

    @classmethod
    def invalid_request(cls, description: str, code: str | None = None) -> Rejection:
        """A 400 ``invalid_request``: the HTTP request itself, or a parameter's value, is malformed."""
        return cls(400, "invalid_request", description, code)

    def body(self, base_url: str) -> dict[str, Any]:
        """The JSON error body: ``error``, ``error_description`` with a fresh trace id, and ``error_uri``."""
        body: dict[str, Any] = {
            "error": self.error,
            "error_description": f"{self.description} (trace_id: {secrets.token_hex(16)})",
        }
        if self.code is not None:
            body["error_uri"] = f"{base_url}/errors/{self.code}"
        return body
