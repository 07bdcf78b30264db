"""What to check when Maskinporten refuses a token request, by MP code: causes, each with its fix."""

from __future__ import annotations

from ..errors import NetworkError, ServerError, TokenRequestError

__all__ = ["CHECKLISTS", "UNKNOWN_KID", "checklist_for"]

#: The checklist key for "Unknown key identifier (kid) for client", which comes without an MP code.
UNKNOWN_KID = "unknown-kid"
_UNREACHABLE = "unreachable"

CHECKLISTS: dict[str, tuple[str, ...]] = {
    "MP-012": (
        "The same grant was sent twice (a reused jti). This library signs a new grant for every attempt; if a "
        "proxy or your own code replays requests, stop it from replaying the token request.",
    ),
    "MP-100": (
        "The client id is wrong: compare MASKINPORTEN_CLIENT_ID with the integration id in Samarbeidsportalen.",
        "The integration exists in the other environment: test and prod are separate; check MASKINPORTEN_ENV.",
        "The integration was deleted or deactivated: look it up in Samarbeidsportalen.",
    ),
    "MP-110": (
        "The grant's aud is not the environment's issuer: use MASKINPORTEN_ENV=test|prod, or the issuer URL exactly "
        "as its metadata gives it, with the trailing slash. The token endpoint URL is not a valid aud.",
    ),
    "MP-120": (
        "The enterprise certificate belongs to the other environment: test certificates work only in test, "
        "production certificates only in prod.",
        "The certificate is revoked or not issued by an approved CA (Buypass, Commfides): order a new one.",
        "The chain is incomplete: use the PKCS#12 file as issued, so x5c carries the leaf and its chain.",
    ),
    "MP-121": (
        "The key registered on the integration has expired: create a new key (maskinporten keygen), register "
        "it, and switch MASKINPORTEN_KEY and MASKINPORTEN_KID to it.",
        "The enterprise certificate has expired: renew it and replace the PKCS#12 file.",
    ),
    "MP-123": (
        "x5c must be a JSON array of standard-base64 DER certificates, leaf first. Load the certificate with "
        "pkcs12:///path or LocalKeySigner.from_pkcs12_file, which builds it correctly.",
    ),
    "MP-124": (
        "The signing key is not the key registered under this kid: compare `maskinporten jwk` with the key on "
        "the integration.",
        "The kid names another key of the integration: set MASKINPORTEN_KID to the kid of this key.",
        "A remote key was rotated (Vault, KMS, Key Vault): pin the key version that is registered.",
    ),
    UNKNOWN_KID: (
        "The kid is not registered on this integration: upload the public JWK (`maskinporten jwk`) in "
        "Samarbeidsportalen, or set MASKINPORTEN_KID to the kid the portal shows.",
        "The key is registered on an integration in the other environment, or on another integration.",
    ),
    "MP-130": (
        "This machine's clock is more than 10 seconds off: synchronise it with NTP (in a container, the host's).",
        "`maskinporten doctor` shows the offset against Maskinporten's clock.",
    ),
    "MP-200": (
        "The scope is not on the integration: add it in Samarbeidsportalen, or fix a typo in MASKINPORTEN_SCOPES.",
        "The API owner has not given your organisation access to the scope yet: ask them.",
        "For a scope delegated by a customer: add the scope to your own integration and send consumer_org.",
    ),
    "MP-250": (
        "The API owner has not granted your organisation (or the customer) access to this scope: apply for "
        "access with the API owner (for NAV's APIs, NAV).",
        "In test, access must be granted to the synthetic test organisation you use.",
    ),
    "MP-251": (
        "The customer has not delegated the scope to you in Altinn: their daglig leder (or someone with the "
        "access manager role) gives it under Profile > API access > Give and remove API access.",
        "The delegation went to another organisation number, e.g. a sub-unit: it must name the supplier's "
        "organisation number that owns the integration.",
        "MASKINPORTEN_CONSUMER_ORG is the wrong organisation, or the delegation was withdrawn.",
        "In test, the delegation is made in Altinn's test environment (TT02) with synthetic organisations.",
    ),
    _UNREACHABLE: (
        "A firewall or proxy blocks outbound HTTPS to Maskinporten: allow the token endpoint's host on port 443 "
        "(set HTTPS_PROXY if you must go through a proxy).",
        "DNS or TLS fails on this machine: try `curl -I` on the token endpoint.",
        "Maskinporten is down or overloaded: check status.digdir.no and try again later.",
    ),
}


def checklist_for(error: TokenRequestError) -> tuple[str, ...]:
    """Return the causes and fixes to check for ``error``, or an empty tuple when none are known."""
    if isinstance(error, (NetworkError, ServerError)):
        return CHECKLISTS[_UNREACHABLE]
    if error.code in CHECKLISTS:
        return CHECKLISTS[error.code]
    if "unknown key identifier" in (error.description or "").lower():
        return CHECKLISTS[UNKNOWN_KID]
    if error.error == "invalid_scope":
        return CHECKLISTS["MP-200"]
    return ()
