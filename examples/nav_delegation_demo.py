"""An accounting-system supplier sends a follow-up plan to NAV on behalf of a customer, offline.

Regnskap AS (313042995) makes accounting software. Its customer Baker AS (310539759) has, in Altinn, delegated the
scope ``nav:oppfolgingsplan/lps.write`` to Regnskap AS. Regnskap AS's integration then asks Maskinporten for a
token with ``consumer_org=310539759`` and sends the plan to NAV's API.

Next to that story, Regnskap AS's payroll system sends Baker AS's inntektsmelding (``nav:inntektsmelding/lps.write``)
through an Altinn system user that Baker AS approved for the system, and calls an API hosted on Altinn with the
Maskinporten token exchanged for an Altinn token. Finally, Regnskap AS rotates its key through Digdir's self-service
API while requests keep going to NAV: the new key is added, used only once Maskinporten accepts it, and the old key
removed, with no failed request and no token thrown away.

Here Maskinporten (and Altinn's system register and token exchange) is the local emulator and NAV's APIs
stand-ins that accept only valid tokens with their scope. Run it with ``nox -s demo`` (or
``python examples/nav_delegation_demo.py`` with maskinporten-auth installed).
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import sys
import tempfile
import threading
import uuid
from collections import Counter
from pathlib import Path

import httpx
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from maskinporten_auth import AltinnAuth, DelegationError, LocalKeySigner, MaskinportenAuth, SystemUserError, TokenEvent
from maskinporten_auth.selfservice import ADMIN_SCOPES, ExpiryWatch, RotationProgress, SelfService
from maskinporten_auth.testing import MaskinportenEmulator
from maskinporten_auth.testing.protected_api import ProtectedApi

SCOPE = "nav:oppfolgingsplan/lps.write"
INNTEKTSMELDING = "nav:inntektsmelding/lps.write"
SYSTEM_ID = "313042995_lonn"  # Regnskap AS's payroll system in Altinn's system register
SUPPLIER = "313042995"  # Regnskap AS
CUSTOMER = "310539759"  # Baker AS, who delegated the scope
OTHER_CUSTOMER = "313990265"  # a customer who has not
MELDING = {"arbeidsgiver": CUSTOMER, "arbeidstaker": "Ola Nordmann", "beregnetInntekt": 52000, "aar": 2026}
PLAN = {"arbeidstaker": "Kari Nordmann", "tiltak": ["tilrettelagt arbeidstid"], "evalueringsdato": "2026-12-15"}


def step(text: str) -> None:
    print(f"\n== {text}")


def party(claim: dict[str, str] | None) -> str:
    return claim["ID"] if claim else "-"


def main() -> None:
    events: Counter[str] = Counter()

    def count(event: TokenEvent) -> None:
        events[event.kind] += 1

    with MaskinportenEmulator() as maskinporten, tempfile.TemporaryDirectory() as workdir:
        nav = ProtectedApi(lambda: maskinporten.jwks, issuer=maskinporten.issuer, scope=SCOPE)
        with nav:
            step("Regnskap AS creates its key locally (never on a web page)")
            key_file = Path(workdir) / "regnskap-as.pem"
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            key_file.touch(mode=0o600)
            key_file.write_bytes(
                key.private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                )
            )
            kid = f"regnskap-{uuid.uuid4().hex[:8]}"
            signer = LocalKeySigner.from_pem_file(key_file, kid=kid)
            public_jwk = signer.public_jwk()
            print(
                f"key file {key_file.name} (mode 600); public JWK to register: kid={kid}, n={public_jwk['n'][:16]}..."
            )

            step("Regnskap AS registers its integration in Maskinporten with the public key")
            client_id = str(uuid.uuid4())
            maskinporten.register_client(
                client_id, orgno=SUPPLIER, scopes=[SCOPE, INNTEKTSMELDING], keys={kid: public_jwk}
            )
            print(f"client_id={client_id}, orgno={SUPPLIER}, scopes={SCOPE} {INNTEKTSMELDING}")

            step("Baker AS's daglig leder delegates the scope to Regnskap AS in Altinn")
            maskinporten.delegate(CUSTOMER, SUPPLIER, SCOPE)
            print(f"{CUSTOMER} -> {SUPPLIER}: {SCOPE}")

            auth = MaskinportenAuth(
                client_id=client_id,
                scopes=SCOPE,
                signer=signer,
                environment=maskinporten.environment,
                consumer_org=CUSTOMER,
                on_event=count,
            )
            plan_url = f"{nav.url}/api/v1/oppfolgingsplan"

            step("Regnskap AS sends Baker AS's follow-up plan to NAV with httpx")
            response = httpx.post(plan_url, json=PLAN, auth=auth)
            body = response.json()
            print(f"HTTP {response.status_code}: consumer={party(body['consumer'])} supplier={party(body['supplier'])}")

            step("...and a second time with requests, and once from asyncio")
            print(f"requests: HTTP {requests.post(plan_url, json=PLAN, auth=auth, timeout=10).status_code}")

            async def send_async() -> int:
                async with httpx.AsyncClient(auth=auth) as client:
                    return (await client.post(plan_url, json=PLAN)).status_code

            print(f"httpx.AsyncClient: HTTP {asyncio.run(send_async())}")
            print(
                f"tokens fetched from Maskinporten: {events['fetched']}, "
                f"requests served from the cache: {events['cache_hit']}"
            )
            tokens_seen = {call.claims["jti"] for call in nav.calls if call.claims}
            print(f"NAV saw {len(nav.calls)} requests carrying {len(tokens_seen)} distinct token(s)")

            step(f"Regnskap AS tries to act for {OTHER_CUSTOMER}, who has delegated nothing")
            try:
                auth.with_consumer_org(OTHER_CUSTOMER).get_token()
            except DelegationError as error:
                print(f"{type(error).__name__}: status={error.status} code={error.code}")
                print(f"Maskinporten says: {error.description}")
                print(f"hint: {error.hint}")

            step("Token claims as NAV verified them (the token itself is never printed)")
            claims = next(call.claims for call in nav.calls if call.claims)
            shown = {
                name: claims[name] for name in ("iss", "client_id", "scope", "consumer", "supplier") if name in claims
            }
            print(json.dumps(shown, indent=2))

            systemuser_story(maskinporten, auth, client_id)
            rotation_story(maskinporten, auth, client_id, plan_url)


def systemuser_story(maskinporten: MaskinportenEmulator, auth: MaskinportenAuth, client_id: str) -> None:
    """The same supplier sends an inntektsmelding through Baker AS's system user, then calls an Altinn-hosted API."""
    altinn_issuer = f"{maskinporten.url}/authentication/api/v1/openid/"
    nav = ProtectedApi(lambda: maskinporten.jwks, issuer=maskinporten.issuer, scope=INNTEKTSMELDING)
    altinn_app = ProtectedApi(lambda: maskinporten.jwks, issuer=altinn_issuer, scope=INNTEKTSMELDING)
    with nav, altinn_app:
        step("Regnskap AS lists its client id on its payroll system in Altinn's system register; Baker AS approves")
        print("(the vendor's system user request, approved by someone who can act for Baker AS in Altinn)")
        systemuser_id = maskinporten.add_systemuser(CUSTOMER, client_id, system_id=SYSTEM_ID)
        print(f"system {SYSTEM_ID}: system user {systemuser_id} owned by {CUSTOMER}")

        step("The payroll system sends Baker AS's inntektsmelding to NAV as the system user")
        payroll = MaskinportenAuth(client_id, INNTEKTSMELDING, auth.signer, environment=maskinporten.environment)
        baker = payroll.with_systemuser(CUSTOMER)  # a view: the same key, cache and connections for every customer
        response = httpx.post(f"{nav.url}/api/v1/inntektsmelding", json=MELDING, auth=baker)
        print(f"HTTP {response.status_code}; the token as NAV verified it:")
        claims = nav.calls[-1].claims or {}
        (detail,) = claims["authorization_details"]
        print(json.dumps({"consumer": claims["consumer"], "authorization_details": [detail]}, indent=2))

        step(f"The system asks for {OTHER_CUSTOMER}, who has approved no system user")
        try:
            payroll.with_systemuser(OTHER_CUSTOMER).get_token()
        except SystemUserError as error:
            print(f"{type(error).__name__}: status={error.status} error={error.error} code={error.code}")
            print(f"hint: {error.hint}")

        step("An API hosted on Altinn wants an Altinn token: AltinnAuth exchanges the Maskinporten token")
        altinn = AltinnAuth(baker, environment=maskinporten.url)  # "tt02" or "prod" outside the emulator
        for _ in range(3):
            status = httpx.post(f"{altinn_app.url}/instances", json=MELDING, auth=altinn).status_code
        print(f"HTTP {status} three times; Altinn tokens exchanged: {maskinporten.exchanges}")
        altinn_claims = altinn_app.calls[-1].claims or {}
        print(f"Altinn token: iss={altinn_claims['iss']} orgNumber={altinn_claims['urn:altinn:orgNumber']}")


def rotation_story(maskinporten: MaskinportenEmulator, auth: MaskinportenAuth, client_id: str, plan_url: str) -> None:
    """Regnskap AS rotates its key while requests keep going to NAV: no failure, no token thrown away."""
    maskinporten.propagation_delay = 1.0  # Maskinporten takes 0-2 minutes to learn a new key; here one second
    admin_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    maskinporten.register_client(
        "regnskap-admin", orgno=SUPPLIER, scopes=list(ADMIN_SCOPES), keys={"admin": admin_key.public_key()}
    )
    admin_signer = LocalKeySigner(admin_key, kid="admin")
    admin = MaskinportenAuth("regnskap-admin", list(ADMIN_SCOPES), admin_signer, maskinporten.environment)
    with admin, SelfService(admin, maskinporten.selfservice_url) as api:  # "test" or "prod" outside the emulator
        step("Regnskap AS's key lives a year from when it was posted; the expiry watch warns 30, 7 and 1 days ahead")
        old_kid = str(auth.signer.kid)
        api.renew_key(client_id, old_kid)
        later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=340)
        # the watch's warnings on stdout; the probes' "Unknown key identifier" refusals are expected, not shown
        warnings = logging.StreamHandler(sys.stdout)
        warnings.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        logging.getLogger("maskinporten_auth.selfservice").addHandler(warnings)
        logging.getLogger("maskinporten_auth").addHandler(logging.NullHandler())
        (expiry,) = ExpiryWatch(auth.signer, api=api, client_id=client_id).check(later)
        print(f"340 days on, {expiry.kid} has {expiry.days_left(later):.0f} days left (warned at {expiry.warning})")

        step("Regnskap AS rotates to a new key while requests keep going to NAV")
        new = LocalKeySigner(rsa.generate_private_key(public_exponent=65537, key_size=2048), kid="regnskap-2027")
        cached = auth.get_token()
        sent: Counter[int] = Counter()
        stop = threading.Event()

        def keep_sending() -> None:
            with httpx.Client(auth=auth) as client:
                while not stop.is_set():
                    sent[client.post(plan_url, json=PLAN).status_code] += 1

        def show(progress: RotationProgress) -> None:
            if progress.step != "wait" or progress.attempt == 1:
                print(f"  [{progress.step}] {progress.message}")

        senders = [threading.Thread(target=keep_sending) for _ in range(2)]
        for sender in senders:
            sender.start()
        try:
            api.rotate(client_id, new, auth=auth, remove_after=1.5, poll_interval=0.2, progress=show)
        finally:
            stop.set()
            for sender in senders:
                sender.join()
        print(f"requests to NAV during the rotation, by status: {dict(sent)}")
        print(f"keys registered now: {[key.kid for key in api.keys(client_id)]}")
        print(f"the token cached before the rotation is still the one sent: {auth.get_token() == cached}")
        auth.cache.invalidate(auth.cache_key, cached)
        auth.get_token()
        print(f"the next grant is signed with: {maskinporten.grants[-1].header['kid']}")  # type: ignore[index]


if __name__ == "__main__":
    main()
