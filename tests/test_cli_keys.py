"""``maskinporten keys ...`` and ``maskinporten scopes show`` against the emulator's self-service API."""

from __future__ import annotations

import datetime
import json
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from maskinporten_auth.cli import main
from maskinporten_auth.jwk import public_key_from_jwk
from maskinporten_auth.selfservice import ADMIN_SCOPES
from maskinporten_auth.testing import ClientKey, MaskinportenEmulator

CLIENT_ID = "9f8e7d6c-admin-and-application"
SCOPE = "nav:inntektsmelding/lps.write"


@pytest.fixture
def configured(
    maskinporten_emulator: MaskinportenEmulator,
    rsa_key: rsa.RSAPrivateKey,
    pem_file: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> MaskinportenEmulator:
    """An integration that administers itself, configured through MASKINPORTEN_* as a cron job would be."""
    maskinporten_emulator.register_client(
        CLIENT_ID, orgno="313042995", scopes=[SCOPE, *ADMIN_SCOPES], keys={"old": rsa_key.public_key()}
    )
    for name in [name for name in __import__("os").environ if name.startswith("MASKINPORTEN_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("MASKINPORTEN_ENV", maskinporten_emulator.issuer)
    monkeypatch.setenv("MASKINPORTEN_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("MASKINPORTEN_KEY", pem_file.as_uri())
    monkeypatch.setenv("MASKINPORTEN_KID", "old")
    monkeypatch.setenv("MASKINPORTEN_SELFSERVICE_URL", maskinporten_emulator.selfservice_url)
    return maskinporten_emulator


def listed(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    capsys.readouterr()
    assert main(["keys", "list", "--json"]) == 0
    keys: list[dict[str, object]] = json.loads(capsys.readouterr().out)
    return keys


def new_key(tmp_path: Path, kid: str = "new") -> Path:
    path = tmp_path / f"{kid}.pem"
    assert main(["keygen", str(path), "--kid", kid, "--bits", "2048"]) == 0
    return path


def test_list_shows_a_plain_table_by_default_and_marks_the_signing_key(
    configured: MaskinportenEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["keys", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["KID", "ALG", "BITS", "EXPIRES", "(UTC)", "DAYS", "LEFT", "SIGNING"]
    assert lines[1].split()[0] == "old" and lines[1].split()[-1] == "yes"
    assert [key["kid"] for key in listed(capsys)] == ["old"]


def test_rotate_dry_run_then_rotate_then_remove_the_old_key_after_switching(
    configured: MaskinportenEmulator,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = new_key(tmp_path)
    capsys.readouterr()
    assert main(["keys", "rotate", str(path), "--new-kid", "new", "--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert "add new, keeping every key there" in plan
    assert [key["kid"] for key in listed(capsys)] == ["old"]

    configured.propagation_delay = 0.3
    assert main(["keys", "rotate", str(path), "--new-kid", "new"]) == 0
    out, err = capsys.readouterr()
    assert "export MASKINPORTEN_KID=new" in out and "maskinporten keys remove old" in out
    assert "[wait]" in err and "[verified]" in err
    assert [key["kid"] for key in listed(capsys)] == ["old", "new"]

    assert main(["keys", "remove", "old"]) == 1, "the key the configuration signs with is not removed"
    assert "rotate first" in capsys.readouterr().err
    monkeypatch.setenv("MASKINPORTEN_KEY", path.as_uri())
    monkeypatch.setenv("MASKINPORTEN_KID", "new")
    time.sleep(0.35)
    assert main(["keys", "remove", "old", "--dry-run"]) == 0
    assert "would remove old" in capsys.readouterr().out
    assert main(["keys", "remove", "old"]) == 0
    assert [key["kid"] for key in listed(capsys)] == ["new"]


def test_status_exits_5_when_a_key_expires_within_the_warning_days(
    configured: MaskinportenEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["keys", "status"]) == 0
    path = new_key(tmp_path, "soon")
    assert main(["keys", "add", str(path), "--new-kid", "soon"]) == 0
    assert main(["keys", "status", "--warn-days", "400"]) == 5
    assert "expires within 400 days" in capsys.readouterr().err
    assert main(["keys", "renew", "soon", "--dry-run"]) == 0
    assert "would renew soon" in capsys.readouterr().out
    assert main(["keys", "renew", "soon", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["days_left"] > 364


def test_status_exits_1_when_the_signing_key_is_not_registered(
    configured: MaskinportenEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = new_key(tmp_path, "spare")
    assert main(["keys", "add", str(path)]) == 0
    assert "thumbprint" in capsys.readouterr().err
    assert main(["keys", "remove", "old", "--force"]) == 0
    time.sleep(0.05)
    # the admin integration now signs with a key that is gone: the API refuses its token
    assert main(["keys", "status"]) == 1
    assert "Unknown key identifier" in capsys.readouterr().err


def test_a_sixth_key_is_refused_with_the_keys_to_prune(
    configured: MaskinportenEmulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for number in range(4):
        assert main(["keys", "add", str(new_key(tmp_path, f"k{number}")), "--new-kid", f"k{number}"]) == 0
    capsys.readouterr()
    assert main(["keys", "add", str(new_key(tmp_path, "sixth")), "--new-kid", "sixth"]) == 1
    assert "remove a key first (maskinporten keys remove KID), soonest to expire first:" in capsys.readouterr().err


def test_scopes_show_prints_the_catalogue_entry(
    configured: MaskinportenEmulator, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["scopes", "show", "altinn:serviceowner"]) == 0
    out = capsys.readouterr().out
    assert "3600 s" in out and "delegable (consumer_org)  no" in out
    assert main(["scopes", "show", SCOPE, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["delegation_source"] == "https://tt02.altinn.no/"
    assert main(["scopes", "show", "nav:typo"]) == 1


def test_an_unreachable_api_exits_3(
    configured: MaskinportenEmulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MASKINPORTEN_SELFSERVICE_URL", "http://127.0.0.1:9")
    assert main(["scopes", "show", SCOPE]) == 3
    assert "cannot reach the self-service API" in capsys.readouterr().err


def test_a_custom_environment_without_a_selfservice_url_is_a_configuration_error(
    configured: MaskinportenEmulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MASKINPORTEN_SELFSERVICE_URL")
    assert main(["keys", "list"]) == 2
    assert "MASKINPORTEN_SELFSERVICE_URL" in capsys.readouterr().err


def test_doctor_reports_days_left_on_the_signing_key_and_the_scopes_catalogue_entry(
    configured: MaskinportenEmulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MASKINPORTEN_SCOPES", SCOPE)
    assert main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert "[ ok ] key expiry: old has no expiry" in out
    assert f"[ ok ] scope {SCOPE}: tokens live 120 s, delegable through https://tt02.altinn.no/" in out


def configured_key(capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    assert main(["jwk"]) == 0
    jwk: dict[str, object] = json.loads(capsys.readouterr().out)
    return jwk


def test_doctor_warns_of_a_key_that_expires_soon_and_a_scope_that_cannot_be_delegated(
    configured: MaskinportenEmulator, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    old = configured_key(capsys)
    configured.register_client(
        CLIENT_ID,
        orgno="313042995",
        scopes=["altinn:serviceowner", *ADMIN_SCOPES],
        keys={"old": ClientKey(public_key_from_jwk(old), expires_at=soon(days=10))},
    )
    monkeypatch.setenv("MASKINPORTEN_SCOPES", "altinn:serviceowner")
    monkeypatch.setenv("MASKINPORTEN_CONSUMER_ORG", "310539759")
    assert main(["doctor"]) == 1  # the token itself is refused: no delegation
    out = capsys.readouterr().out
    assert "[warn] key expiry: old expires on" in out and "in 10 days: renew it" in out
    assert "[warn] scope altinn:serviceowner: consumer_org is set, but altinn:serviceowner cannot be delegated" in out


def soon(*, days: int) -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=days, hours=1)
