"""Altinn 3 in the emulator: the system register's system users, and Altinn's exchange of Maskinporten tokens.

System users (maskinporten-protocol.md §5): a grant asking for ``urn:altinn:systemuser`` gets a token only if the
customer named in ``systemuser_org`` owns a system user of a system whose registration lists the grant's client id,
made with the ``externalRef`` the grant sends (by default the owner's organisation number). Otherwise Maskinporten
answers MP-303 ``invalid_altinn_customer_configuration``, and so does the emulator, with a description naming the
cause Altinn documents (troubleshooting, mp-303-error).

Consents (§5): a grant asking for ``urn:altinn:consent`` gets a token only under a consent the register knows
(:meth:`SystemRegister.add_consent`), from the party the grant names, given to the token's consumer, and still
valid (``validTo``); otherwise the refusal is MP-303 ``invalid_authorization_details`` naming the cause (Altinn's
exact wording for these is not documented). The token echoes the consent's ``to``, ``consented``, ``validTo`` and
``consentRights``, as Maskinporten's do.

The exchange (§7): ``GET /authentication/api/v1/exchange/maskinporten`` with a Maskinporten token from this emulator
as bearer gives an Altinn-style token, signed by the emulator's key (verify it with the emulator's ``jwks``).
"""

from __future__ import annotations

import datetime
import secrets
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from ..errors import ConfigurationError
from ..grant import party_urn
from ..jws import CompactJws, MalformedJws
from ..orgnr import is_valid_orgno
from .registry import RegisteredClient
from .rejection import Rejection
from .validation import CONSENT, SYSTEMUSER, AcceptedGrant, orgno_of_party

__all__ = [
    "ALTINN_TOKEN_LIFETIME",
    "EXCHANGE_PATH",
    "SYSTEMUSER_NOT_SET_UP",
    "Consent",
    "SystemRegister",
    "SystemUser",
    "exchange_claims",
]

EXCHANGE_PATH = "/authentication/api/v1/exchange/maskinporten"
SYSTEMUSER_NOT_SET_UP = "invalid_altinn_customer_configuration"
#: Altinn tokens live about 30 minutes (maskinporten-protocol.md §7).
ALTINN_TOKEN_LIFETIME = 1800
#: The organisation number Altinn's ``?test=true`` gives tokens for (Testdepartementet, TTD).
TEST_ORG = "ttd"


@dataclass(frozen=True)
class SystemUser:
    """A system user in the emulated system register.

    ``owner`` is the customer's organisation number; ``system_id`` the vendor's system; ``external_ref`` the
    reference the system user request was made with (the owner's organisation number unless one was given);
    ``clients`` the customers of an agent system user (klientdelegering), whose numbers are *not* valid in
    ``systemuser_org``.
    """

    id: str
    owner: str
    system_id: str
    external_ref: str
    clients: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Consent:
    """A consent (samtykke) that ``from_party`` (a party URN) approved for the data consumer ``to`` (an orgno).

    Tokens under it may be issued until ``valid_to``; ``rights`` are its ``consentRights``.
    """

    id: str
    from_party: str
    to: str
    consented: datetime.datetime
    valid_to: datetime.datetime
    rights: tuple[Mapping[str, Any], ...] = ()

    def token_detail(self) -> dict[str, Any]:
        """The ``urn:altinn:consent`` entry of a token's ``authorization_details``, as Maskinporten issues it."""
        return {
            "type": CONSENT,
            "id": self.id,
            "from": self.from_party,
            "to": {"authority": "iso6523-actorid-upis", "ID": f"0192:{self.to}"},
            "consented": self.consented.isoformat(),
            "validTo": self.valid_to.isoformat(),
            "consentRights": [dict(right) for right in self.rights],
        }


def _consent_refused(description: str) -> Rejection:
    return Rejection(400, "invalid_authorization_details", f"Invalid authorization_details: {description}", "MP-303")


def _not_set_up(description: str) -> Rejection:
    return Rejection(400, SYSTEMUSER_NOT_SET_UP, description, "MP-303")


class SystemRegister:
    """Systems (with the client ids registered on them), their system users, and consents.

    Not locked itself: the emulator serialises access.
    """

    def __init__(self) -> None:
        self.systems: dict[str, set[str]] = {}
        self.systemusers: list[SystemUser] = []
        self.consents: dict[str, Consent] = {}

    def add_consent(
        self,
        from_party: str,
        to: str,
        *,
        valid_to: datetime.datetime,
        consented: datetime.datetime,
        consent_id: str | None = None,
        rights: Sequence[Mapping[str, Any]] = (),
    ) -> Consent:
        """Record a consent that ``from_party`` (orgno, national identity number or party URN) gave ``to``."""
        if not is_valid_orgno(to):
            raise ValueError(f"to must be a valid nine-digit organisation number, got {to!r}")
        if valid_to.tzinfo is None:
            raise ValueError("valid_to must be an aware datetime")
        try:
            from_urn = party_urn(from_party)
        except ConfigurationError as exc:
            raise ValueError(str(exc)) from None
        consent = Consent(
            id=str(uuid.UUID(consent_id)) if consent_id is not None else str(uuid.uuid4()),
            from_party=from_urn,
            to=to,
            consented=consented,
            valid_to=valid_to,
            rights=tuple(rights),
        )
        self.consents[consent.id] = consent
        return consent

    def consent_for(self, grant: AcceptedGrant, detail: dict[str, Any], now: float) -> Consent:
        """The consent a ``urn:altinn:consent`` detail names, if the grant may have a token under it at ``now``."""
        asked = detail.get("id")
        consent = self.consents.get(asked) if isinstance(asked, str) else None
        if consent is None:
            raise _consent_refused(f"consent {asked!r} was not found.")
        if detail.get("from") != consent.from_party:
            raise _consent_refused(f"consent {consent.id} is not from {detail.get('from')!r}.")
        if consent.to != grant.consumer_org:
            raise _consent_refused(f"consent {consent.id} was not given to {grant.consumer_org}.")
        if consent.valid_to.timestamp() <= now:
            raise _consent_refused(f"consent {consent.id} expired at {consent.valid_to.isoformat()} (validTo).")
        return consent

    def add_systemuser(
        self,
        owner_orgno: str,
        supplier_client_id: str | None,
        *,
        system_id: str,
        external_ref: str | None = None,
        clients: Iterable[str] = (),
    ) -> SystemUser:
        """Register ``supplier_client_id`` on ``system_id`` (None: register none) and add a system user of it."""
        for orgno in (owner_orgno, *clients):
            if not is_valid_orgno(orgno):
                raise ValueError(f"an organisation number must have nine digits and a valid check digit: {orgno!r}")
        if not system_id:
            raise ValueError("system_id must not be empty")
        if external_ref == "":
            raise ValueError("external_ref must not be empty")
        client_ids = self.systems.setdefault(system_id, set())
        if supplier_client_id is not None:
            client_ids.add(supplier_client_id)
        systemuser = SystemUser(
            id=str(uuid.uuid4()),
            owner=owner_orgno,
            system_id=system_id,
            external_ref=external_ref if external_ref is not None else owner_orgno,
            clients=frozenset(clients),
        )
        self.systemusers.append(systemuser)
        return systemuser

    def resolve(self, client: RegisteredClient, detail: dict[str, Any]) -> list[SystemUser]:
        """The system users a ``urn:altinn:systemuser`` detail names for ``client``, or the MP-303 refusal."""
        owner = orgno_of_party(detail.get("systemuser_org"))
        assert owner is not None, "the grant's shape was validated first"
        asked_ref = detail.get("externalRef")
        owned = [user for user in self.systemusers if user.owner == owner]
        if not owned:
            if any(owner in user.clients and self._serves(user, client) for user in self.systemusers):
                raise _not_set_up(
                    f"Organisation {owner} is a client of an agent system user; systemuser_org must be the system "
                    "user's owner."
                )
            if owner == client.orgno:
                raise _not_set_up(
                    f"systemuser_org {owner} is the client's own organisation; it must be the system user's owner."
                )
            raise _not_set_up(f"Organisation {owner} has no system user for this system.")
        served = [user for user in owned if self._serves(user, client)]
        if not served:
            raise _not_set_up(
                f"The system register has no ClientId {client.client_id} on the systems of {owner}'s system users."
            )
        wanted = asked_ref if isinstance(asked_ref, str) else owner
        matching = [user for user in served if user.external_ref == wanted]
        if not matching:
            if asked_ref is None:
                raise _not_set_up("The system user request was made with an externalRef, and the request has none.")
            raise _not_set_up(f"No system user of {owner} has the externalRef {asked_ref!r}.")
        return matching

    def _serves(self, user: SystemUser, client: RegisteredClient) -> bool:
        return client.client_id in self.systems.get(user.system_id, ())

    def token_details(self, grant: AcceptedGrant, now: float) -> list[Any] | None:
        """The access token's ``authorization_details`` for ``grant`` at ``now``, or None when the grant has none.

        Each system user is completed with its ``systemuser_id`` (an array) and ``system_id``, each consent with its
        recorded fields; one that is not set up (or not valid) raises the MP-303 refusal.
        """
        details = grant.claims.get("authorization_details")
        if details is None:
            return None
        echoed = []
        for detail in details:
            if detail["type"] == SYSTEMUSER:
                users = self.resolve(grant.client, detail)
                detail = {**detail, "systemuser_id": [user.id for user in users], "system_id": users[0].system_id}
            elif detail["type"] == CONSENT:
                detail = self.consent_for(grant, detail, now).token_detail()
            echoed.append(detail)
        return echoed


def _bearer(authorization: str | None) -> str | None:
    if authorization is None or not authorization.startswith("Bearer "):
        return None
    return authorization[len("Bearer ") :].strip() or None


def exchange_claims(
    authorization: str | None,
    *,
    public_key: rsa.RSAPublicKey,
    maskinporten_issuer: str,
    platform: str,
    now: float,
    test: bool,
    lifetime: int,
) -> dict[str, Any] | None:
    """The claims of the Altinn token for a Maskinporten token in ``authorization``, or None if it is not valid.

    Valid means: signed by this emulator's key, issued by this emulator and not expired at ``now``. The Altinn token
    keeps the Maskinporten token's ``scope``, ``client_id``, ``consumer``, ``supplier``, ``authorization_details``,
    adds Altinn's ``urn:altinn:*`` claims and lives ``lifetime`` seconds.
    """
    token = _bearer(authorization)
    try:
        jws = CompactJws.parse(token) if token is not None else None
    except MalformedJws:
        jws = None
    if jws is None or jws.header.get("alg") != "RS256" or not jws.signature_is_valid(public_key, "RS256"):
        return None
    source = jws.claims
    expires = source.get("exp")
    if source.get("iss") != maskinporten_issuer or not isinstance(expires, (int, float)) or expires <= now:
        return None
    issued_at = int(now)
    consumer = orgno_of_party(source.get("consumer"))
    claims: dict[str, Any] = {
        name: source[name]
        for name in ("scope", "client_id", "client_amr", "consumer", "supplier", "authorization_details")
        if name in source
    }
    claims.update(
        {
            "token_type": "Bearer",
            "urn:altinn:authenticatemethod": "maskinporten",
            "urn:altinn:authlevel": 3,
            "urn:altinn:orgNumber": consumer,
            "iss": f"{platform}/authentication/api/v1/openid/",
            "iat": issued_at,
            "nbf": issued_at,
            "exp": issued_at + lifetime,
            "jti": secrets.token_urlsafe(24),
        }
    )
    if test:
        claims["urn:altinn:org"] = TEST_ORG
    return claims
