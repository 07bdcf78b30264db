"""What to check when Maskinporten refuses a token request: the causes, each with its fix.

The checklists of refusals are :mod:`maskinporten_auth.mp_codes`' table, the one the typed errors' hints come from;
this adds the one for a token endpoint that cannot be reached.
"""

from __future__ import annotations

from ..errors import NetworkError, ServerError, TokenRequestError
from ..mp_codes import explain

__all__ = ["UNREACHABLE", "checklist_for"]

#: What to check when no usable answer came from the token endpoint (a network failure or a 5xx).
UNREACHABLE = (
    "A firewall or proxy blocks outbound HTTPS to Maskinporten: allow the token endpoint's host on port 443 "
    "(set HTTPS_PROXY if you must go through a proxy).",
    "DNS or TLS fails on this machine: try `curl -I` on the token endpoint.",
    "Maskinporten is down or overloaded: check status.digdir.no and try again later.",
)


def checklist_for(error: TokenRequestError) -> tuple[str, ...]:
    """Return the causes and fixes to check for ``error``, or an empty tuple when none are known."""
    if isinstance(error, (NetworkError, ServerError)):
        return UNREACHABLE
    found = explain(error.code, error.description, error.error)
    return found.checklist if found is not None else ()
