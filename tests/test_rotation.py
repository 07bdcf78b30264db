"""Zero-downtime key rotation through the self-service API, against the emulator's propagation delay."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from maskinporten_auth import LocalKeySigner
from maskinporten_auth.errors import ConfigurationError
from maskinporten_auth.selfservice import KeyLimitError, RotationError, RotationProgress, SignerReloader
from maskinporten_auth.testing import MaskinportenEmulator
from maskinporten_auth.testing.rotation import (
    APPLICATION_SCOPE,
    ROTATION_STEPS,
    RotationRig,
    crash_and_rerun,
    tokens_throughout,
)

PROPAGATION = 0.3


def new_signer(kid: str) -> LocalKeySigner:
    return LocalKeySigner(rsa.generate_private_key(public_exponent=65537, key_size=2048), kid=kid)


@pytest.fixture
def rig(maskinporten_emulator: MaskinportenEmulator) -> Iterator[RotationRig]:
    maskinporten_emulator.propagation_delay = PROPAGATION
    rig = RotationRig.create(maskinporten_emulator, new_signer("old"))
    yield rig
    rig.close()


def test_a_rotation_adds_waits_for_the_new_kid_switches_and_removes_the_old_key(
    rig: RotationRig, caplog: pytest.LogCaptureFixture
) -> None:
    auth = rig.application()
    cached = auth.get_token()
    steps: list[RotationProgress] = []
    new = new_signer("new")
    caplog.set_level(logging.WARNING, logger="maskinporten_auth")
    result = rig.rotate(new, auth, progress=steps.append)
    assert not caplog.records, "a probe refused while the new kid propagates is expected, not a warning"
    assert [step.step for step in steps if step.step != "wait"] == ["read", "add", "verified", "switch", "remove"]
    assert any(step.step == "wait" for step in steps), "the new kid must have been unknown for a while"
    assert result.added and result.switched and result.removed == ("old",) and result.attempts > 1
    assert auth.signer is new and rig.kids() == ["new"]
    assert auth.get_token() == cached, "a rotation must not empty the token cache"
    assert rig.refused_application_grants("new") == 0
    auth.close()


def test_every_view_of_the_family_signs_with_the_new_key(rig: RotationRig) -> None:
    auth = rig.application()
    view = auth.with_consumer_org("310539759")
    new = new_signer("new")
    rig.rotate(new, auth)
    assert view.signer is new
    assert auth.with_consumer_org("313990265").signer is new
    auth.close()


@pytest.mark.parametrize("crash_after", ROTATION_STEPS)
def test_a_rerun_after_a_crash_converges(rig: RotationRig, crash_after: str) -> None:
    new = new_signer("new")
    result = crash_and_rerun(rig, new, crash_after)
    assert rig.kids() == ["new"]
    assert result.new_kid == "new" and not result.rolled_back
    assert rig.refused_application_grants("new") == 0
    assert rig.refused_application_grants("old") == 0


def test_a_dry_run_changes_nothing_and_returns_the_plan(rig: RotationRig) -> None:
    auth = rig.application()
    result = rig.rotate(new_signer("new"), auth, dry_run=True)
    assert result.dry_run and not result.added and not result.switched
    assert "add new, keeping every key there" in result.plan
    assert "remove old 0 s after new is accepted" in result.plan
    assert rig.kids() == ["old"] and auth.signer is rig.old_signer
    auth.close()


def test_a_rotation_never_replaces_a_full_set_and_names_keys_to_prune(rig: RotationRig) -> None:
    for n in range(4):
        rig.api.add_key(rig.client_id, new_signer(f"spare{n}"))
    auth = rig.application()
    with pytest.raises(KeyLimitError) as refused:
        rig.rotate(new_signer("new"), auth)
    assert "old" not in refused.value.prune, "the key in use is never offered for pruning"
    assert sorted(refused.value.prune) == ["spare0", "spare1", "spare2", "spare3"]
    assert len(rig.kids()) == 5 and auth.signer is rig.old_signer
    auth.close()


def test_a_kid_that_never_propagates_is_rolled_back_and_signing_stays(rig: RotationRig) -> None:
    rig.emulator.propagation_delay = 30
    auth = rig.application()
    with pytest.raises(RotationError) as failed:
        rig.rotate(new_signer("new"), auth, propagation_timeout=0.5)
    assert failed.value.rolled_back and failed.value.result.added and not failed.value.result.switched
    assert "Unknown key identifier" in (failed.value.description or "")
    assert rig.kids() == ["old"] and auth.signer is rig.old_signer
    assert auth.get_token()
    auth.close()


class MismatchedSigner(LocalKeySigner):
    """Registers one key's public half but signs with another: Maskinporten refuses its signature (MP-124)."""

    def __init__(self, kid: str) -> None:
        super().__init__(rsa.generate_private_key(public_exponent=65537, key_size=2048), kid=kid)
        self._shown = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()

    def public_key(self) -> rsa.RSAPublicKey:
        return self._shown


def test_a_key_maskinporten_refuses_is_rolled_back_at_once(rig: RotationRig) -> None:
    rig.emulator.propagation_delay = 0
    auth = rig.application()
    with pytest.raises(RotationError) as failed:
        rig.rotate(MismatchedSigner("new"), auth)
    assert failed.value.result.attempts == 1 and failed.value.rolled_back
    assert "signature" in (failed.value.description or "")
    assert rig.kids() == ["old"] and auth.signer is rig.old_signer
    auth.close()


def test_no_token_request_fails_while_threads_and_tasks_ask_throughout_a_rotation(rig: RotationRig) -> None:
    auth = rig.application()
    new = new_signer("new")
    task_errors: list[BaseException] = []
    task_tokens = [0]

    async def tasks_ask(stop: asyncio.Event) -> None:
        async def ask() -> None:
            calls = 0
            while not stop.is_set():
                calls += 1
                try:
                    token = await auth.aget_token()
                except Exception as exc:  # counted: the test asserts there are none
                    task_errors.append(exc)
                    continue
                task_tokens[0] += 1
                if calls % 3 == 0:
                    auth.cache.invalidate(auth.cache_key, token)
                await asyncio.sleep(0)

        await asyncio.gather(*(ask() for _ in range(8)))

    async def rotate_while_asked() -> None:
        stop = asyncio.Event()
        asking = asyncio.create_task(tasks_ask(stop))
        await rig.api.arotate(rig.client_id, new, auth=auth, remove_after=0.5, poll_interval=0.05)
        await asyncio.sleep(PROPAGATION * 2)  # the removal propagates while they go on
        stop.set()
        await asking
        await rig.api.aclose()

    with tokens_throughout(auth, threads=4) as counts:
        asyncio.run(rotate_while_asked())
        thread_tokens, thread_errors = counts()
    assert thread_errors == [] and task_errors == []
    assert thread_tokens > 20 and task_tokens[0] > 20
    assert rig.kids() == ["new"]
    assert rig.refused_application_grants("new") == 0 and rig.refused_application_grants("old") == 0
    auth.close()


def write_key(path: Path, signer_key: rsa.RSAPrivateKey) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_bytes(
        signer_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    temporary.replace(path)  # as a Kubernetes secret update swaps the files at once


def test_a_mounted_key_file_that_changes_is_switched_to_once_maskinporten_accepts_it(
    rig: RotationRig, tmp_path: Path
) -> None:
    old_key, new_key = (rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(2))
    key_file, kid_file = tmp_path / "key.pem", tmp_path / "kid"
    write_key(key_file, old_key)
    kid_file.write_text("old")

    def load() -> LocalKeySigner:
        return LocalKeySigner.from_pem_file(key_file, kid=kid_file.read_text().strip())

    rig.emulator.register_client(
        rig.client_id, orgno="313042995", scopes=[APPLICATION_SCOPE], keys={"old": old_key.public_key()}
    )
    auth = rig.application(load())
    cached = auth.get_token()
    reloader = SignerReloader(auth, load, watch=[key_file, kid_file])
    assert reloader.check() is False, "nothing changed"

    write_key(key_file, new_key)
    kid_file.write_text("new")
    new = LocalKeySigner(new_key, kid="new")
    rig.api.add_key(rig.client_id, new)
    assert reloader.check() is False, "the new kid is not known yet: keep the old key"
    assert auth.signer.kid == "old" and auth.get_token() == cached
    time.sleep(PROPAGATION + 0.05)
    assert reloader.check() is True
    assert auth.signer.kid == "new" and auth.get_token() == cached
    auth.cache.invalidate(auth.cache_key, cached)
    assert auth.get_token() != cached
    assert rig.emulator.grants[-1].header == {"alg": "RS256", "kid": "new"}
    auth.close()


def test_the_reloader_checks_in_the_background(rig: RotationRig, tmp_path: Path) -> None:
    key_file = tmp_path / "key.pem"
    new_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    write_key(key_file, rsa.generate_private_key(public_exponent=65537, key_size=2048))
    auth = rig.application()
    rig.emulator.propagation_delay = 0
    rig.api.add_key(rig.client_id, LocalKeySigner(new_key, kid="new"))
    with SignerReloader(
        auth, lambda: LocalKeySigner.from_pem_file(key_file, kid="new"), watch=[key_file], interval=0.05
    ):
        write_key(key_file, new_key)
        deadline = time.monotonic() + 5
        while auth.signer.kid != "new" and time.monotonic() < deadline:
            time.sleep(0.02)
    assert auth.signer.kid == "new"
    auth.close()


@pytest.mark.parametrize(("options", "field"), [({"watch": []}, "watch"), ({"interval": 0}, "interval")])
def test_the_reloader_refuses_bad_settings(rig: RotationRig, options: dict[str, object], field: str) -> None:
    settings: dict[str, object] = {"watch": ["key.pem"], **options}
    with pytest.raises(ConfigurationError) as refused:
        SignerReloader(rig.application(), lambda: rig.old_signer, **settings)  # type: ignore[arg-type]
    assert refused.value.field == field


@pytest.mark.parametrize(
    ("options", "field"),
    [({"poll_interval": 0}, "poll_interval"), ({"propagation_timeout": -1}, "propagation_timeout")],
)
def test_a_rotation_refuses_bad_settings_before_changing_anything(
    rig: RotationRig, options: dict[str, float], field: str
) -> None:
    auth = rig.application()
    with pytest.raises(ConfigurationError) as refused:
        rig.rotate(new_signer("new"), auth, **options)
    assert refused.value.field == field
    with pytest.raises(ConfigurationError, match="signs for client"):
        rig.api.rotate("another-client", new_signer("new"), auth=auth)
    assert rig.kids() == ["old"]
    auth.close()


def test_a_signer_replaced_before_its_kid_propagates_falls_back_to_the_previous_key(
    rig: RotationRig, caplog: pytest.LogCaptureFixture
) -> None:
    rig.emulator.propagation_delay = 60.0  # the new kid stays unknown for the whole test
    auth = rig.application()
    new = new_signer("early")
    rig.api.add_key(rig.client_id, new)
    auth.replace_signer(new)  # too early: Maskinporten does not know the kid yet
    view = auth.with_consumer_org("310539759")
    assert view.signer is new  # every view of the family switched
    assert auth.get_token()  # no failed request: the grant was signed again with the previous key
    kids = [
        grant.header.get("kid") for grant in rig.emulator.grants if (grant.claims or {}).get("iss") == rig.client_id
    ]
    assert kids == ["early", "old"]
    assert "does not know the new key's kid yet" in caplog.text
    auth.close()
