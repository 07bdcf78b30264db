"""Digdir's self-service API: the emulator's rules, the client over them, key status and the expiry watch."""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import time
from collections.abc import Iterator
from email.message import Message

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from maskinporten_auth import LocalKeySigner, MaskinportenAuth
from maskinporten_auth.certificates import CertificateChain
from maskinporten_auth.errors import ConfigurationError, InvalidGrantError
from maskinporten_auth.jwk import rsa_public_jwk
from maskinporten_auth.selfservice import (
    ExpiryWatch,
    KeyExpiry,
    KeyLimitError,
    SelfService,
    SelfServiceError,
    key_expiry,
)
from maskinporten_auth.testing import MaskinportenEmulator, issue_certificate_chain
from maskinporten_auth.testing.rotation import APPLICATION_SCOPE, RotationRig
from maskinporten_auth.testing.selfservice import ADMIN_READ, ADMIN_WRITE, DEFAULT_SCOPE_CATALOGUE, KEY_LIFETIME

from .conftest import answering
from .test_secrets import leaks, log_texts

YEAR = datetime.timedelta(seconds=KEY_LIFETIME)


def new_signer(kid: str) -> LocalKeySigner:
    return LocalKeySigner(rsa.generate_private_key(public_exponent=65537, key_size=2048), kid=kid)


@pytest.fixture
def rig(maskinporten_emulator: MaskinportenEmulator) -> Iterator[RotationRig]:
    rig = RotationRig.create(maskinporten_emulator, new_signer("old"))
    yield rig
    rig.close()


def admin_token(rig: RotationRig) -> str:
    assert rig.api.admin_auth is not None
    return rig.api.admin_auth.get_token()


def jwks_url(rig: RotationRig) -> str:
    return f"{rig.emulator.selfservice_url}/api/v1/clients/{rig.client_id}/jwks"


# The emulator's rules, over plain HTTP


def test_keys_need_an_admin_token_issued_by_the_emulator_with_the_admin_scopes(rig: RotationRig) -> None:
    assert httpx.get(jwks_url(rig)).status_code == 401
    assert httpx.get(jwks_url(rig), headers={"Authorization": "Bearer not-a-token"}).status_code == 401
    application_token = rig.application().get_token()
    refused = httpx.get(jwks_url(rig), headers={"Authorization": f"Bearer {application_token}"})
    assert refused.status_code == 403
    assert "idporten:dcr.read" in refused.json()["error_description"]
    assert httpx.get(jwks_url(rig), headers={"Authorization": f"Bearer {admin_token(rig)}"}).status_code == 200


def test_an_admin_manages_only_its_own_organisations_clients(rig: RotationRig) -> None:
    other_key = new_signer("other-admin")
    rig.emulator.register_client(
        "admin-of-another-org",
        orgno="310539759",
        scopes=[ADMIN_READ, ADMIN_WRITE],
        keys={"other-admin": other_key.public_jwk()},
    )
    with MaskinportenAuth(
        "admin-of-another-org", [ADMIN_READ, ADMIN_WRITE], other_key, rig.emulator.environment
    ) as other:
        headers = {"Authorization": f"Bearer {other.get_token()}"}
        replacement = {"keys": [rsa_public_jwk(new_signer("x").public_key(), kid="theirs", alg="RS256")]}
        assert httpx.get(jwks_url(rig), headers=headers).status_code == 403
        assert httpx.post(jwks_url(rig), json=replacement, headers=headers).status_code == 403
        assert httpx.delete(jwks_url(rig), headers=headers).status_code == 403
    assert [key.kid for key in rig.api.keys(rig.client_id)] == ["old"]


def test_a_post_replaces_the_whole_set_and_each_posted_key_lives_a_year(rig: RotationRig) -> None:
    headers = {"Authorization": f"Bearer {admin_token(rig)}"}
    new = rsa_public_jwk(new_signer("x").public_key(), kid="new", alg="RS256")
    before = time.time()
    answer = httpx.post(jwks_url(rig), json={"keys": [new]}, headers=headers)
    assert answer.status_code == 200
    keys = httpx.get(jwks_url(rig), headers=headers).json()["keys"]
    assert [key["kid"] for key in keys] == ["new"]
    assert before + KEY_LIFETIME - 5 <= keys[0]["exp"] <= time.time() + KEY_LIFETIME


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda jwk: jwk.pop("use"), "use is required"),
        (lambda jwk: jwk.update(alg="PS256"), "alg must be one of"),
        (lambda jwk: jwk.update(kid="bad kid"), "may hold only"),
        (lambda jwk: jwk.update(exp=1), "must be a time in the future"),
    ],
)
def test_a_key_the_api_would_refuse_is_refused_with_its_reason(rig: RotationRig, change: object, message: str) -> None:
    jwk = rsa_public_jwk(new_signer("x").public_key(), kid="k", alg="RS256")
    change(jwk)  # type: ignore[operator]
    answer = httpx.post(jwks_url(rig), json={"keys": [jwk]}, headers={"Authorization": f"Bearer {admin_token(rig)}"})
    assert answer.status_code == 400
    assert message in answer.json()["error_description"]


def test_six_keys_are_refused(rig: RotationRig) -> None:
    keys = [rsa_public_jwk(new_signer("x").public_key(), kid=f"k{n}", alg="RS256") for n in range(6)]
    answer = httpx.post(jwks_url(rig), json={"keys": keys}, headers={"Authorization": f"Bearer {admin_token(rig)}"})
    assert answer.status_code == 400
    assert "at most 5 keys" in answer.json()["error_description"]


def test_a_new_kid_is_unknown_until_the_change_propagates(rig: RotationRig) -> None:
    rig.emulator.propagation_delay = 0.5
    signer = new_signer("fresh")
    rig.api.add_key(rig.client_id, signer)
    probe = MaskinportenAuth(rig.client_id, APPLICATION_SCOPE, signer, rig.emulator.environment, remember_refusals=0)
    with pytest.raises(InvalidGrantError, match="Unknown key identifier"):
        probe.get_token()
    time.sleep(0.6)
    assert probe.get_token()
    probe.close()


def test_an_expired_key_gives_mp_121(rig: RotationRig) -> None:
    signer = new_signer("short")
    jwk = {**signer.public_jwk(), "exp": int(time.time()) + 60}
    rig.api.add_key(rig.client_id, jwk)
    rig.emulator.clock_offset = 120
    auth = MaskinportenAuth(rig.client_id, APPLICATION_SCOPE, signer, rig.emulator.environment)
    with pytest.raises(InvalidGrantError) as refused:
        auth.get_token()
    assert refused.value.code == "MP-121"
    assert "Expired key" in (refused.value.description or "")
    auth.close()


def test_the_scope_catalogue_is_public(maskinporten_emulator: MaskinportenEmulator) -> None:
    entries = httpx.get(f"{maskinporten_emulator.selfservice_url}/api/v1/scopes/all").json()
    assert {entry["name"] for entry in entries} == {entry["name"] for entry in DEFAULT_SCOPE_CATALOGUE}
    for field in ("at_max_age", "delegation_source", "allowed_integration_types", "active", "token_type"):
        assert all(field in entry for entry in entries)


def test_register_client_keys_still_work_and_show_in_the_api(rig: RotationRig) -> None:
    assert rig.kids() == ["old"]
    assert rig.application().get_token()


# The client


def test_add_key_keeps_every_key_and_is_a_no_op_the_second_time(rig: RotationRig) -> None:
    signer = new_signer("second")
    added = rig.api.add_key(rig.client_id, signer)
    assert added.kid == "second" and added.size == 2048 and added.use == "sig"
    assert rig.api.add_key(rig.client_id, signer) == added
    assert rig.kids() == ["old", "second"]


def test_add_key_refuses_a_sixth_key_naming_the_keys_to_prune(rig: RotationRig) -> None:
    for n in range(4):
        rig.api.add_key(rig.client_id, new_signer(f"k{n}"))
    with pytest.raises(KeyLimitError) as refused:
        rig.api.add_key(rig.client_id, new_signer("sixth"))
    assert set(refused.value.prune) == {"old", "k0", "k1", "k2", "k3"}
    assert "maskinporten keys remove" in str(refused.value)
    assert len(rig.kids()) == 5


def test_a_kid_registered_for_another_key_is_refused(rig: RotationRig) -> None:
    with pytest.raises(SelfServiceError, match="registered for another key"):
        rig.api.add_key(rig.client_id, new_signer("old"))


def test_a_private_jwk_is_refused(rig: RotationRig) -> None:
    with pytest.raises(ConfigurationError, match="private key material"):
        rig.api.add_key(rig.client_id, {"kty": "RSA", "kid": "k", "n": "x", "e": "AQAB", "d": "secret"})


def test_renew_reposts_the_key_for_another_year_and_keeps_the_others(rig: RotationRig) -> None:
    rig.api.add_key(rig.client_id, {**new_signer("soon").public_jwk(), "exp": int(time.time()) + 3600})
    others = {key.kid: key.expires_at for key in rig.api.keys(rig.client_id) if key.kid != "soon"}
    renewed = rig.api.renew_key(rig.client_id, "soon")
    assert renewed.expires_at is not None
    assert renewed.expires_at > datetime.datetime.now(datetime.timezone.utc) + YEAR - datetime.timedelta(minutes=1)
    assert {key.kid: key.expires_at for key in rig.api.keys(rig.client_id) if key.kid != "soon"} == others


def test_remove_key_keeps_the_others_and_removes_the_last_with_delete(rig: RotationRig) -> None:
    rig.api.add_key(rig.client_id, new_signer("second"))
    assert rig.api.remove_key(rig.client_id, "old") is True
    assert rig.kids() == ["second"]
    assert rig.api.remove_key(rig.client_id, "old") is False
    assert rig.api.remove_key(rig.client_id, "second") is True
    assert rig.kids() == []


def test_an_api_refusal_carries_the_apis_own_message(rig: RotationRig) -> None:
    with pytest.raises(SelfServiceError) as refused:
        rig.api.keys("no-such-client")
    assert refused.value.status == 404
    assert refused.value.description == "Client no-such-client not found."
    assert refused.value.hint is not None


def test_an_api_that_quotes_the_admin_token_gets_it_blanked_in_one_line(
    rig: RotationRig, caplog: pytest.LogCaptureFixture
) -> None:
    def echo(headers: Message, _: bytes) -> bytes:
        said = f"{headers['authorization']} is not allowed\nINFO forged log line"
        return json.dumps({"error_description": said}).encode()

    with answering(400, echo) as url, pytest.raises(SelfServiceError) as refused:
        SelfService(rig.api.admin_auth, url).keys(rig.client_id)
    token = admin_token(rig)
    description = refused.value.description or ""
    assert description == "Bearer <token> is not allowed INFO forged log line"
    assert not leaks([str(refused.value), repr(refused.value), *log_texts(caplog.records)], [token])


@pytest.mark.parametrize("status", [200, 500])
def test_json_nested_too_deep_is_a_typed_error(rig: RotationRig, status: int) -> None:
    with answering(status, lambda headers, content: b"[" * 100_000) as url, pytest.raises(SelfServiceError) as failed:
        SelfService(rig.api.admin_auth, url).keys(rig.client_id)
    assert failed.value.status == status


def test_an_unreachable_api_is_a_typed_error_without_a_token(maskinporten_emulator: MaskinportenEmulator) -> None:
    api = SelfService(None, "http://127.0.0.1:9")
    with pytest.raises(SelfServiceError, match="cannot reach"):
        api.scope("nav:x")
    with pytest.raises(ConfigurationError, match="admin_auth"):
        api.keys("c")


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"environment": "staging"}, "environment"),
        ({"prefix": "api"}, "prefix"),
        ({"catalogue_ttl": -1}, "catalogue_ttl"),
    ],
)
def test_bad_configuration_fails_at_construction(options: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigurationError) as refused:
        SelfService(None, **options)  # type: ignore[arg-type]
    assert refused.value.field == field


def test_keys_mark_the_one_this_process_signs_with(rig: RotationRig) -> None:
    rig.api.add_key(rig.client_id, new_signer("second"))
    keys = rig.api.keys(rig.client_id, signer=rig.old_signer)
    assert [(key.kid, key.signing) for key in keys] == [("old", True), ("second", False)]
    days = keys[1].days_left()
    assert days is not None and 364 < days <= 365


def test_the_async_forms_do_the_same(rig: RotationRig) -> None:
    async def scenario() -> list[str]:
        await rig.api.aadd_key(rig.client_id, new_signer("second"))
        await rig.api.arenew_key(rig.client_id, "second")
        await rig.api.aremove_key(rig.client_id, "old")
        scope = await rig.api.ascope(APPLICATION_SCOPE)
        assert scope.delegable
        keys = [key.kid for key in await rig.api.akeys(rig.client_id)]
        await rig.api.aclose()
        return keys

    assert asyncio.run(scenario()) == ["second"]


# The scope catalogue


def test_scope_info_explains_lifetime_delegation_and_refusals(maskinporten_emulator: MaskinportenEmulator) -> None:
    api = SelfService(None, maskinporten_emulator.selfservice_url)
    altinn = api.scope("altinn:serviceowner")
    assert altinn.token_lifetime == 3600 and not altinn.delegable
    assert api.scope("nav:inntektsmelding/lps.write").delegable
    assert api.scope("nav:oppfolgingsplan/lps.write").token_lifetime == 120
    assert "not active" in api.scope("nav:retired/api").problems()[0]
    with pytest.raises(SelfServiceError, match="not in Digdir's scope catalogue"):
        api.scope("nav:typo")
    api.close()


def test_the_catalogue_is_read_once_and_a_snapshot_needs_no_network(
    maskinporten_emulator: MaskinportenEmulator,
) -> None:
    requests: list[str] = []
    client = httpx.Client(event_hooks={"request": [lambda request: requests.append(str(request.url))]})
    api = SelfService(None, maskinporten_emulator.selfservice_url, http_client=client)
    api.scope("altinn:serviceowner")
    api.scope("nav:inntektsmelding/lps.write")
    assert len(requests) == 1
    offline = SelfService(None, "http://127.0.0.1:9", scope_snapshot=DEFAULT_SCOPE_CATALOGUE)
    assert offline.scope("altinn:serviceowner").at_max_age == 3600
    client.close()


# Expiry


def test_the_watch_warns_at_30_7_and_1_days_once_each(rig: RotationRig, caplog: pytest.LogCaptureFixture) -> None:
    rig.api.add_key(rig.client_id, {**new_signer("soon").public_jwk(), "exp": int(time.time()) + 40 * 86400})
    events: list[KeyExpiry] = []
    watch = ExpiryWatch(rig.old_signer, api=rig.api, client_id=rig.client_id, on_event=events.append)
    now = datetime.datetime.now(datetime.timezone.utc)
    warned = []
    for days_later in (0, 11, 12, 33, 34, 39, 41):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="maskinporten_auth.selfservice"):
            checked = watch.check(now + datetime.timedelta(days=days_later))
        soon = next(event for event in checked if event.kid == "soon")
        warned.append(soon.warning)
        assert all("soon" in record.getMessage() for record in caplog.records)
    assert warned == [None, 30, None, 7, None, 1, None]
    assert {event.kid for event in events} == {"old", "soon"}  # "old" was re-posted with "soon": a year left


def test_a_certificates_expiry_needs_no_admin_scopes() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    signer = LocalKeySigner(key, certificate_chain=CertificateChain(issue_certificate_chain(key.public_key())))
    expiry = key_expiry(signer)
    assert expiry is not None and expiry.source == "certificate" and 29 < expiry.days_left() <= 30
    events = ExpiryWatch(signer).check()
    assert [event.warning for event in events] == [30]


def test_the_catalogue_tells_the_lifetime_the_emulator_issues(maskinporten_emulator: MaskinportenEmulator) -> None:
    maskinporten_emulator.set_scope_lifetime("nav:oppfolgingsplan/lps.write", 599)
    api = SelfService(None, maskinporten_emulator.selfservice_url, catalogue_ttl=0)
    assert api.scope("nav:oppfolgingsplan/lps.write").token_lifetime == 599
    api.close()
