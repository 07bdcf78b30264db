"""Environments as people give them: names, Maskinporten's issuers, and the mistakes that get a precise answer."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from maskinporten_auth import ConfigurationError
from maskinporten_auth.environment import PROD, TEST, resolve_environment


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any name lookup or connection fails the test: a known issuer must need no I/O."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network I/O attempted: {args!r}")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.mark.parametrize(
    ("value", "preset"),
    [
        ("test", TEST),
        (" PROD ", PROD),
        ("https://test.maskinporten.no/", TEST),
        ("https://test.maskinporten.no", TEST),
        ("https://Test.Maskinporten.NO/", TEST),
        ("https://maskinporten.no/", PROD),
        ("https://maskinporten.no", PROD),
    ],
)
@pytest.mark.usefixtures("no_network")
def test_maskinporten_issuers_are_the_presets_without_network(value: str, preset: object) -> None:
    assert resolve_environment(value) is preset


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (
            "https://test.maskinporten.no/token",
            "is the token endpoint; give the issuer ('https://test.maskinporten.no/')",
        ),
        ("https://maskinporten.no/token/", "is the token endpoint; give the issuer ('https://maskinporten.no/')"),
        ("http://127.0.0.1:8080/token", "is the token endpoint; give the issuer ('http://127.0.0.1:8080/')"),
        ("tt02", "'tt02' is Altinn's test environment; Maskinporten's is 'test'"),
        ("TT02", "Altinn's test environment; Maskinporten's is 'test'"),
        ("at22", "Altinn's test environment; Maskinporten's is 'test'"),
        ("https://platform.tt02.altinn.no", "Altinn's test environment; Maskinporten's is 'test'"),
        ("ver2", "'ver2' is a retired Maskinporten environment; use 'test'"),
        ("staging", "must be 'test', 'prod', an issuer URL or an Environment"),
    ],
)
@pytest.mark.usefixtures("no_network")
def test_likely_mistakes_say_what_to_give_instead(value: str, problem: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        resolve_environment(value, "MASKINPORTEN_ENV")
    assert raised.value.field == "MASKINPORTEN_ENV"
    assert problem in raised.value.problem
    if "token endpoint" in problem:
        assert "or 'test'/'prod'" in raised.value.problem


@pytest.mark.usefixtures("no_network")
def test_an_issuer_with_a_path_is_not_taken_for_a_preset() -> None:
    # Not Maskinporten's issuer: discovery is attempted (and here refused), never silently the preset.
    with pytest.raises(AssertionError, match="network I/O attempted"):
        resolve_environment("https://test.maskinporten.no/other/")


def test_doctor_says_when_test_is_the_default(pem_file: Path, unused_port: int) -> None:
    environ = {name: value for name, value in os.environ.items() if not name.startswith("MASKINPORTEN_")}
    environ |= {
        "MASKINPORTEN_CLIENT_ID": "client",
        "MASKINPORTEN_SCOPES": "nav:example/read",
        "MASKINPORTEN_KEY": pem_file.as_uri(),
        "MASKINPORTEN_KID": "kid",
        "HTTPS_PROXY": f"http://127.0.0.1:{unused_port}",  # test.maskinporten.no is refused at once, not looked up
    }
    doctor = [str(Path(sys.executable).with_name("maskinporten")), "doctor"]
    result = subprocess.run(doctor, env=environ, capture_output=True, text=True, timeout=60, check=False)
    assert (
        "[ ok ] environment: test (issuer https://test.maskinporten.no/, token endpoint "
        "https://test.maskinporten.no/token; the default, as MASKINPORTEN_ENV is not set)"
    ) in result.stdout
    explicit = subprocess.run(
        [*doctor, "--env", "prod"], env=environ, capture_output=True, text=True, timeout=60, check=False
    )
    assert "[ ok ] environment: prod (issuer https://maskinporten.no/, token endpoint" in explicit.stdout
    assert "the default" not in explicit.stdout
