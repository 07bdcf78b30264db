"""Altinn 3 in the emulator: the system register's system users, and Altinn's exchange of Maskinporten tokens.

System users (maskinporten-protocol.md §5): a grant asking for ``urn:altinn:systemuser`` gets a token only if the
customer named in ``systemuser_org`` owns a system user of a system whose registration lists the grant's client id,
made with the ``externalRef`` the grant sends (by default the owner's organisation number). Otherwise Maskinporten
answers MP-303 ``invalid_altinn_customer_configuration``, and so does the emulator, with a description naming the
cause Altinn documents (troubleshooting, mp-303-error).

The exchange (§7): ``GET /authentication/api/v1/exchange/maskinporten`` with a Maskinporten token from this emulator
as bearer gives an Altinn-style token, signed by the emulator's key (verify it with the emulator's ``jwks``).
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from ..jws import CompactJws, MalformedJws
from ..orgnr import is_valid_orgno
from .registry import RegisteredClient
from .rejection import Rejection
from .validation import SYSTEMUSER, AcceptedGrant, orgno_of_party

__all__ = [
    "ALTINN_TOKEN_LIFETIME",
    "EXCHANGE_PATH",
    "SYSTEMUSER_NOT_SET_UP",
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


def _not_set_up(description: str) -> Rejection:
    return Rejection(400, SYSTEMUSER_NOT_SET_UP, description, "MP-303")


class SystemRegister:
    """Systems (with the client ids registered on them) and their system users. Not locked: the emulator is."""

    def __init__(self) -> None:
        self.systems: dict[str, set[str]] = {}
        self.systemusers: list[SystemUser] = []

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

    def token_details(self, grant: AcceptedGrant) -> list[Any] | None:
        """The access token's ``authorization_details`` for ``grant``, or None when the grant has none.

        Each system user is completed with its ``systemuser_id`` (an array) and ``system_id``; one that is not set
        up raises the MP-303 refusal.
        """
        details = grant.claims.get("authorization_details")
        if details is None:
            return None
        echoed = []
        for detail in details:
            if detail["type"] == SYSTEMUSER:
                users = self.resolve(grant.client, detail)
                detail = {**detail, "systemuser_id": [user.id for user in users], "system_id": users[0].system_id}
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
