"""One rule for scopes everywhere: whitespace (the OAuth wire format) or commas separate them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from jose import jwt

from maskinporten_auth import ConfigurationError, LocalKeySigner, MaskinportenAuth
from maskinporten_auth.cli import main
from maskinporten_auth.config import EnvConfig
from maskinporten_auth.testing import MaskinportenEmulator

READ, WRITE = "nav:example/read", "nav:example/write"


@pytest.mark.parametrize(
    "scopes",
    [
        f"{READ} {WRITE}",
        f"{READ},{WRITE}",
        f" {READ} ,\t{WRITE} ",
        [READ, WRITE],
        [f"{READ} {WRITE}"],
        (READ, WRITE, READ),
    ],
)
def test_every_form_of_two_scopes_means_the_same_two_scopes(signer: LocalKeySigner, scopes: object) -> None:
    auth = MaskinportenAuth("client", scopes, signer, "test")  # type: ignore[arg-type]
    assert auth.scopes == (READ, WRITE)


@pytest.mark.parametrize("value", [f"{READ} {WRITE}", f"{READ},{WRITE}", f"{READ}, {WRITE}"])
def test_the_environment_variable_follows_the_same_rule(value: str) -> None:
    assert EnvConfig(environ={"MASKINPORTEN_SCOPES": value}).scopes() == [READ, WRITE]


@pytest.mark.parametrize(
    ("scopes", "problem"),
    [
        ("", "at least one scope is required"),
        (" , ", "at least one scope is required"),
        ([], "at least one scope is required"),
        ('a:"b"', "'a:\"b\"' is not a valid OAuth scope"),
        ([READ, 3], "must hold strings"),
        ({READ}, "must be a scope string or a list of scopes"),
    ],
)
def test_what_is_not_a_scope_fails_at_construction(signer: LocalKeySigner, scopes: object, problem: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        MaskinportenAuth("client", scopes, signer, "test")  # type: ignore[arg-type]
    assert raised.value.field == "scopes"
    assert problem in raised.value.problem


def test_scopes_in_the_wire_format_get_a_token_for_both(
    maskinporten_emulator: MaskinportenEmulator, signer: LocalKeySigner
) -> None:
    maskinporten_emulator.register_client(
        "two-scopes", orgno="313042995", scopes=[READ, WRITE], keys={"test-key-1": signer.public_jwk()}
    )
    for scopes in (f"{READ} {WRITE}", f"{READ},{WRITE}"):
        with MaskinportenAuth("two-scopes", scopes, signer, maskinporten_emulator.environment) as auth:
            token = auth.get_token()
        assert jwt.get_unverified_claims(token)["scope"] == f"{READ} {WRITE}"
        grant = maskinporten_emulator.grants[-1].claims
        assert grant is not None and grant["scope"] == f"{READ} {WRITE}"


@pytest.mark.parametrize("given", [[f"{READ},{WRITE}"], [f"{READ} {WRITE}"], [READ, WRITE]])
def test_the_command_line_follows_the_same_rule(
    maskinporten_emulator: MaskinportenEmulator,
    signer: LocalKeySigner,
    pem_file: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    given: list[str],
) -> None:
    maskinporten_emulator.register_client(
        "two-scopes", orgno="313042995", scopes=[READ, WRITE], keys={"test-key-1": signer.public_jwk()}
    )
    for name in [name for name in os.environ if name.startswith("MASKINPORTEN_")]:
        monkeypatch.delenv(name)
    options = [argument for scope in given for argument in ("--scope", scope)]
    configuration = ["--env", maskinporten_emulator.issuer, "--client-id", "two-scopes", "--kid", "test-key-1"]
    code = main(["token", *configuration, "--key", str(pem_file), *options])
    assert code == 0
    assert jwt.get_unverified_claims(capsys.readouterr().out.strip())["scope"] == f"{READ} {WRITE}"
