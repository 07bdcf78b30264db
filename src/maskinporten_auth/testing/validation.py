"""Token-request validation, step by step in the order Maskinporten checks (maskinporten-protocol.md §2, §4).

Rules cite their source: [FS] Digdir's Maskinporten troubleshooting page (docs.digdir.no, maskinporten_feilsoking:
the MP codes), [JG] its JWT-grant page (maskinporten_protocol_jwtgrant), [SB] and [SK] its system-user and consent
pages, and the RFCs by section.
"""

from __future__ import annotations

import re
import reprlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from ..jws import RSA_ALGORITHMS, CompactJws, MalformedJws
from ..orgnr import is_valid_orgno
from .registry import RegisteredClient, Registry
from .rejection import Rejection
from .x5c import (
    check_chain_order,
    check_organisation,
    check_trusted,
    check_validity,
    decode_x5c,
    leads_to,
    leaf_public_key,
)

__all__ = [
    "ALLOWED_CLAIMS",
    "AUTHORIZATION_DETAILS_FIELDS",
    "AUTHORIZATION_DETAILS_TYPES",
    "CLOCK_TOLERANCE",
    "CONSENT",
    "JWT_BEARER",
    "MAX_GRANT_LIFETIME",
    "SYSTEMUSER",
    "AcceptedGrant",
    "GrantValidator",
    "check_authorization_details_shape",
    "orgno_of_party",
    "read_assertion",
]

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
SYSTEMUSER = "urn:altinn:systemuser"
CONSENT = "urn:altinn:consent"
AUTHORIZATION_DETAILS_TYPES = (SYSTEMUSER, CONSENT)
ALLOWED_CLAIMS = frozenset(
    {"aud", "iss", "iat", "exp", "jti", "scope", "resource", "consumer_org", "iss_onbehalfof", "pid"}
    | {"authorization_details"}
)
MAX_GRANT_LIFETIME = 120
CLOCK_TOLERANCE = 10
_FORM = "application/x-www-form-urlencoded"
_ORG_AUTHORITY = "iso6523-actorid-upis"
_PID = re.compile(r"[0-9]{11}")


def read_assertion(content_type: str | None, body: bytes) -> str:
    """Check the form (content type, no repeated parameter, ``grant_type``) and return its ``assertion``."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type != _FORM:
        raise Rejection.invalid_request(f"Content-Type must be {_FORM}, got {content_type or 'none'}.")
    try:
        form = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body))
    except (UnicodeDecodeError, ValueError):
        raise Rejection.invalid_request("The request body is not a valid form.") from None
    repeated = sorted(name for name, values in form.items() if len(values) > 1)
    if repeated:
        raise Rejection.invalid_request(f"Parameter(s) repeated: {', '.join(repeated)}.")
    grant_type = form.get("grant_type", [""])[0]
    if not grant_type:
        raise Rejection.invalid_request("Missing parameter grant_type.")
    if grant_type != JWT_BEARER:
        raise Rejection(400, "unsupported_grant_type", f"Unsupported grant type {grant_type!r}; use {JWT_BEARER}.")
    assertion = form.get("assertion", [""])[0]
    if not assertion:
        raise Rejection.invalid_request("Missing parameter assertion.")
    return assertion


@dataclass(frozen=True)
class AcceptedGrant:
    """A grant that passed every check: what the access token is issued for."""

    client: RegisteredClient
    claims: dict[str, Any]
    scopes: tuple[str, ...]
    client_amr: str
    consumer_org: str
    supplier_org: str | None


def _numeric_date(claims: dict[str, Any], name: str) -> float:
    value = claims.get(name)
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise Rejection.authentication_failed(f"The JWT claim {name} is missing or not a number.")
    return value


def orgno_of_party(value: Any) -> str | None:
    """The orgno in ``{"authority": "iso6523-actorid-upis", "ID": "0192:<orgno>"}`` (``ID`` in any case)."""
    if not isinstance(value, dict) or value.get("authority") != _ORG_AUTHORITY:
        return None
    ids = [item for key, item in value.items() if key.lower() == "id"]
    if len(ids) != 1 or not isinstance(ids[0], str) or not ids[0].startswith("0192:"):
        return None
    orgno = ids[0][5:]
    return orgno if is_valid_orgno(orgno) else None


class GrantValidator:
    """Validates one grant against the registry, the issuer and the emulator's clock ``now``.

    ``jti_seen_before`` tells whether the grant's ``jti`` arrived in an earlier request.
    """

    def __init__(self, registry: Registry, *, issuer: str, now: float, jti_seen_before: bool) -> None:
        self.registry = registry
        self.issuer = issuer
        self.now = now
        self.jti_seen_before = jti_seen_before

    def validate(self, assertion: str) -> AcceptedGrant:
        """Return the accepted grant, or raise the :class:`Rejection` of the first failed check."""
        jws = self._parse(assertion)
        self._check_crit(jws.header)
        algorithm = self._algorithm(jws.header)
        chain = self._certificate_chain(jws.header)
        if chain:
            check_chain_order(chain)
            check_validity(chain, self.now)
            check_trusted(chain, self.registry.trusted_certificates().values(), self.now)
        client = self._client(jws.claims)
        key = self._key(client, jws.header, chain)
        if not jws.signature_is_valid(key, algorithm):
            raise Rejection.authentication_failed("Invalid JWT signature.", "MP-124")
        claims = jws.claims
        self._check_audience(claims)
        self._check_times(claims)
        self._check_jti(claims)
        self._check_claim_names(claims)
        consumer_org = self._consumer_org(claims, client)
        self._check_optional_claims(claims)
        scopes = self._scopes(claims, client, consumer_org)
        supplier_org = None if consumer_org == client.orgno else client.orgno
        if supplier_org is not None:
            self._check_delegation(consumer_org, supplier_org, scopes)
        return AcceptedGrant(
            client=client,
            claims=claims,
            scopes=scopes,
            client_amr="virksomhetssertifikat" if chain else "private_key_jwt",
            consumer_org=consumer_org,
            supplier_org=supplier_org,
        )

    @staticmethod
    def _parse(assertion: str) -> CompactJws:
        try:
            jws = CompactJws.parse(assertion, allow_empty_signature=True)
        except MalformedJws as exc:
            # [FS] MP-011: "Invalid assertion. Invalid parameter value": the assertion is not a JWT at all.
            raise Rejection.invalid_request(f"Invalid assertion. Invalid parameter value: {exc}.", "MP-011") from None
        if not jws.signature:
            # [FS] MP-124, maskinporten-protocol.md §4: an empty signature part is an invalid signature.
            raise Rejection.authentication_failed("Invalid JWT signature: the signature part is empty.", "MP-124")
        return jws

    @staticmethod
    def _check_crit(header: dict[str, Any]) -> None:
        """RFC 7515 §4.1.11: a JWS whose ``crit`` names extensions the recipient does not understand is invalid.

        Maskinporten documents no JWS extension (maskinporten-protocol.md §2), so any ``crit`` fails.
        """
        if "crit" in header:
            raise Rejection.authentication_failed(
                f"The JWT header parameter crit names extensions Maskinporten does not understand: "
                f"{reprlib.repr(header['crit'])}."
            )

    @staticmethod
    def _algorithm(header: dict[str, Any]) -> str:
        algorithm = header.get("alg")
        if algorithm not in RSA_ALGORITHMS:
            raise Rejection.authentication_failed(
                f"Unsupported JWT alg {algorithm!r}; use one of {', '.join(RSA_ALGORITHMS)}."
            )
        return str(algorithm)

    @staticmethod
    def _certificate_chain(header: dict[str, Any]) -> list[x509.Certificate]:
        """The decoded ``x5c`` chain, or [] for a ``kid`` grant; exactly one of the two must be present."""
        if ("kid" in header) == ("x5c" in header):
            raise Rejection.authentication_failed("The JWT header must contain exactly one of kid and x5c.")
        return decode_x5c(header["x5c"]) if "x5c" in header else []

    def _client(self, claims: dict[str, Any]) -> RegisteredClient:
        issuer = claims.get("iss")
        client = self.registry.clients.get(issuer) if isinstance(issuer, str) else None
        if client is None:
            raise Rejection.authentication_failed(f"Client not found: {issuer!r}.", "MP-100")
        return client

    def _key(self, client: RegisteredClient, header: dict[str, Any], chain: list[x509.Certificate]) -> rsa.RSAPublicKey:
        if chain:
            if not leads_to(chain, client.certificates.values(), self.now):
                raise Rejection.authentication_failed(
                    "The JWT is signed with an invalid certificate: not one registered for this client.", "MP-120"
                )
            check_organisation(chain, client.orgno)
            return leaf_public_key(chain)
        kid = header["kid"]
        registered = client.keys.get(kid) if isinstance(kid, str) else None
        if registered is None:
            raise Rejection.invalid_grant("Unknown key identifier (kid) for client.")
        if registered.expired(self.now):
            raise Rejection.authentication_failed(f"Expired key. The key {kid!r} has expired.", "MP-121")
        return registered.public_key

    def _check_audience(self, claims: dict[str, Any]) -> None:
        if claims.get("aud") != self.issuer:
            raise Rejection.authentication_failed(
                f"Invalid JWT claim aud {claims.get('aud')!r}: it must be the issuer {self.issuer!r}.", "MP-110"
            )

    def _check_times(self, claims: dict[str, Any]) -> None:
        issued_at, expires = _numeric_date(claims, "iat"), _numeric_date(claims, "exp")
        lifetime = expires - issued_at
        if not 0 < lifetime <= MAX_GRANT_LIFETIME:
            raise Rejection.authentication_failed(
                f"Invalid JWT lifetime: exp - iat is {lifetime} s; it must be above 0 and at most "
                f"{MAX_GRANT_LIFETIME} s.",
            )
        if issued_at > self.now + CLOCK_TOLERANCE:
            raise Rejection.authentication_failed(
                f"Issue time is after now: iat is {issued_at - self.now:.0f} s ahead of Maskinporten's clock.", "MP-130"
            )
        if expires <= self.now:
            raise Rejection.authentication_failed("JWT is expired.", "MP-130")
        if issued_at < self.now - CLOCK_TOLERANCE:
            raise Rejection.authentication_failed(
                f"JWT is expired: issued {self.now - issued_at:.0f} s ago, more than {CLOCK_TOLERANCE} s.", "MP-130"
            )

    def _check_jti(self, claims: dict[str, Any]) -> None:
        if "jti" in claims and not isinstance(claims["jti"], str):
            raise Rejection.authentication_failed("The JWT claim jti must be a string.")
        if self.jti_seen_before:
            raise Rejection.authentication_failed("Grant is used before (reused jti).", "MP-012")

    @staticmethod
    def _check_claim_names(claims: dict[str, Any]) -> None:
        unknown = sorted(set(claims) - ALLOWED_CLAIMS)
        if unknown:
            raise Rejection.invalid_grant(f"Invalid assertion. Unknown claim(s) in JWT: {', '.join(unknown)}.")

    @staticmethod
    def _consumer_org(claims: dict[str, Any], client: RegisteredClient) -> str:
        """The organisation the token is for: ``consumer_org`` when given, else the client's own."""
        if "consumer_org" not in claims:
            return client.orgno
        consumer_org = claims["consumer_org"]
        if not isinstance(consumer_org, str) or not is_valid_orgno(consumer_org):
            raise Rejection.invalid_grant(
                f"Invalid assertion. consumer_org {consumer_org!r} is not a nine-digit organisation number."
            )
        if "iss_onbehalfof" in claims:
            raise Rejection.invalid_grant("Invalid assertion. consumer_org cannot be combined with iss_onbehalfof.")
        if consumer_org == client.orgno:
            # [FS]: a 400 invalid_request, in Maskinporten's own (Norwegian) words.
            raise Rejection.invalid_request(
                "Det er samme organisasjonsnummer både på klient og i consumer_org claimet. "
                "Løsning: Fjern consumer_org claimet."
            )
        return consumer_org

    @staticmethod
    def _check_optional_claims(claims: dict[str, Any]) -> None:
        resource = claims.get("resource")
        # [JG] on resource: "Currently only array supported"; RFC 8707's single string is refused.
        if "resource" in claims and not (
            isinstance(resource, list) and resource and all(isinstance(item, str) for item in resource)
        ):
            raise Rejection.invalid_grant(
                "Invalid assertion. resource must be an array of strings (currently only array supported)."
            )
        if "pid" in claims and not (isinstance(claims["pid"], str) and _PID.fullmatch(claims["pid"])):
            raise Rejection.invalid_grant("Invalid assertion. pid must be an eleven-digit national identity number.")
        if "authorization_details" in claims:
            check_authorization_details_shape(claims["authorization_details"])

    def _scopes(self, claims: dict[str, Any], client: RegisteredClient, consumer_org: str) -> tuple[str, ...]:
        scope = claims.get("scope")
        scopes = tuple(scope.split(" ")) if isinstance(scope, str) and scope else ()
        if not scopes or "" in scopes:
            raise Rejection(
                400, "invalid_scope", "Token request contains invalid scopes for client: no scope requested.", "MP-200"
            )
        invalid = [
            name
            for name in scopes
            if name not in client.scopes and not self.registry.has_delegated(consumer_org, client.orgno, name)
        ]
        if invalid:
            raise Rejection(
                400,
                "invalid_scope",
                f"Token request contains invalid scopes for client {client.client_id}: {' '.join(invalid)}",
                "MP-200",
            )
        return scopes

    def _check_delegation(self, consumer_org: str, supplier_org: str, scopes: tuple[str, ...]) -> None:
        for scope in scopes:
            if not self.registry.has_delegated(consumer_org, supplier_org, scope):
                raise Rejection(
                    403,
                    "forbidden",
                    f"Consumer {consumer_org} has not delegated access to the scope {scope} "
                    f"to supplier {supplier_org}.",
                    "MP-251",
                )


#: The fields each authorization_details type may carry ([SB], [SK]; RFC 9396 §2 makes ``type`` required).
AUTHORIZATION_DETAILS_FIELDS: dict[str, frozenset[str]] = {
    SYSTEMUSER: frozenset({"type", "systemuser_org", "externalRef"}),
    CONSENT: frozenset({"type", "id", "from"}),
}


def check_authorization_details_shape(details: Any) -> None:
    """Check the *shape* of RFC 9396 ``authorization_details`` as Maskinporten does, in its order ([FS]).

    An array of objects (MP-303 otherwise), each of a supported ``type`` (MP-301), with no field that type does
    not define (MP-302), with well-formed values (MP-303: ``systemuser_org`` an ISO 6523 party with a valid orgno,
    ``externalRef`` a string), and one system user at most (MP-303). Whether the system user exists is a later,
    separate question; this function only looks at the claim.
    """

    def invalid(code: str, problem: str) -> Rejection:
        return Rejection(400, "invalid_authorization_details", f"Invalid authorization_details: {problem}", code)

    if not isinstance(details, list) or not details:
        raise invalid("MP-303", "must be a non-empty JSON array.")
    for detail in details:
        if not isinstance(detail, dict):
            raise invalid("MP-303", "each entry must be a JSON object.")
        kind = detail.get("type")
        if not isinstance(kind, str) or kind not in AUTHORIZATION_DETAILS_FIELDS:
            raise invalid(
                "MP-301", f"unknown type {reprlib.repr(kind)}; supported: {', '.join(AUTHORIZATION_DETAILS_TYPES)}."
            )
        unknown = sorted(str(name) for name in set(detail) - AUTHORIZATION_DETAILS_FIELDS[kind])
        if unknown:
            raise invalid("MP-302", f"unknown field(s) for {kind}: {reprlib.repr(', '.join(unknown))}.")
        if kind == SYSTEMUSER and orgno_of_party(detail.get("systemuser_org")) is None:
            raise invalid(
                "MP-303", 'systemuser_org must be {"authority": "iso6523-actorid-upis", "ID": "0192:<orgno>"}.'
            )
        if kind == SYSTEMUSER and not isinstance(detail.get("externalRef", ""), str):
            raise invalid("MP-303", "externalRef must be a string.")
    if sum(detail["type"] == SYSTEMUSER for detail in details) > 1:
        raise invalid("MP-303", "only one system user per request.")
