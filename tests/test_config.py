"""MaskinportenAuth.from_env / EnvConfig: every variable, every bad value, and key URIs for each installed backend."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from maskinporten_auth import PROD, TEST, ConfigurationError, LocalKeySigner
from maskinporten_auth.auth import MaskinportenAuth
from maskinporten_auth.config import EnvConfig
from maskinporten_auth.testing import MaskinportenEmulator

CLIENT_ID = "1ab20f23-c69c-44d3-b078-a0d92083ada5"
SCOPE = "nav:oppfolgingsplan/lps.write"
CUSTOMER = "310539759"
SUPPLIER = "313042995"


@pytest.fixture
def encrypted_pem_file(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> Path:
    path = tmp_path / "encrypted.pem"
    path.write_bytes(
        rsa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"correct horse"),
        )
    )
    return path


@pytest.fixture
def p12_file(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey, certificate_chain: tuple[list[x509.Certificate], rsa.RSAPrivateKey]
) -> Path:
    chain, _root_key = certificate_chain
    path = tmp_path / "virksomhet.p12"
    path.write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"regnskap", rsa_key, chain[0], chain[1:], serialization.BestAvailableEncryption(b"p12-secret")
        )
    )
    return path


@pytest.fixture
def environ(pem_file: Path) -> dict[str, str]:
    """A complete, valid configuration."""
    return {
        "MASKINPORTEN_ENV": "test",
        "MASKINPORTEN_CLIENT_ID": CLIENT_ID,
        "MASKINPORTEN_SCOPES": SCOPE,
        "MASKINPORTEN_KEY": pem_file.as_uri(),
        "MASKINPORTEN_KID": "6lBmeUGHQN",
    }


def config_error(environ: dict[str, str], **overrides: Any) -> ConfigurationError:
    with pytest.raises(ConfigurationError) as caught:
        MaskinportenAuth.from_env(environ=environ, **overrides)
    return caught.value


# The whole configuration


def test_every_variable(environ: dict[str, str]) -> None:
    environ |= {
        "MASKINPORTEN_ENV": "prod",
        "MASKINPORTEN_SCOPES": f"{SCOPE} nav:other",
        "MASKINPORTEN_CONSUMER_ORG": CUSTOMER,
        "MASKINPORTEN_RESOURCE": "https://api.nav.no/oppfolgingsplan",
    }
    auth = MaskinportenAuth.from_env(environ=environ)
    assert isinstance(auth, MaskinportenAuth)
    assert auth.environment == PROD
    assert auth.client_id == CLIENT_ID
    assert auth.scopes == (SCOPE, "nav:other")
    assert auth.consumer_org == CUSTOMER
    assert auth.signer.kid == "6lBmeUGHQN"
    assert auth._grants.claims.resource == ("https://api.nav.no/oppfolgingsplan",)


def test_from_env_classmethod_reads_os_environ(environ: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert MaskinportenAuth.from_env().client_id == CLIENT_ID


def test_prefix_separates_integrations(environ: dict[str, str], p12_file: Path) -> None:
    both = environ | {
        "PAYROLL_MASKINPORTEN_CLIENT_ID": "payroll",
        "PAYROLL_MASKINPORTEN_SCOPES": "skatteetaten:payroll",
        "PAYROLL_MASKINPORTEN_KEY": "pkcs12://" + p12_file.as_uri().removeprefix("file://"),
        "PAYROLL_MASKINPORTEN_KEY_PASSWORD": "p12-secret",
    }
    default, payroll = (
        MaskinportenAuth.from_env(environ=both),
        MaskinportenAuth.from_env("PAYROLL_MASKINPORTEN_", environ=both),
    )
    assert (default.client_id, default.signer.kid) == (CLIENT_ID, "6lBmeUGHQN")
    assert (payroll.client_id, payroll.signer.kid, len(payroll.signer.x5c or [])) == ("payroll", None, 3)


def test_errors_name_the_prefixed_variable(environ: dict[str, str]) -> None:
    error = config_error({f"PAYROLL_{name}": value for name, value in environ.items() if "CLIENT_ID" not in name})
    assert error.field == "MASKINPORTEN_CLIENT_ID"  # the default prefix reads nothing here


def test_overrides_replace_variables_which_are_then_not_read(pem_file: Path) -> None:
    signer = LocalKeySigner.from_pem_file(pem_file, kid="given")
    auth = MaskinportenAuth.from_env(
        environ={"MASKINPORTEN_CLIENT_ID": CLIENT_ID, "MASKINPORTEN_KEY": "nonsense", "MASKINPORTEN_SCOPES": "@@"},
        scopes=[SCOPE],
        signer=signer,
        environment=TEST,
        grant_lifetime=30,
    )
    assert (auth.scopes, auth.signer, auth._grants.claims.lifetime) == ((SCOPE,), signer, 30)


def test_an_invalid_override_keeps_its_own_name(environ: dict[str, str]) -> None:
    assert config_error(environ, consumer_org="123456789").field == "consumer_org"


# MASKINPORTEN_ENV


@pytest.mark.parametrize(("value", "expected"), [("test", TEST), ("prod", PROD), (" PROD ", PROD), ("", TEST)])
def test_env_presets(environ: dict[str, str], value: str, expected: object) -> None:
    assert MaskinportenAuth.from_env(environ=environ | {"MASKINPORTEN_ENV": value}).environment == expected


def test_env_defaults_to_test(environ: dict[str, str]) -> None:
    del environ["MASKINPORTEN_ENV"]
    assert MaskinportenAuth.from_env(environ=environ).environment == TEST


def test_env_issuer_url_is_discovered(environ: dict[str, str], maskinporten_emulator: MaskinportenEmulator) -> None:
    auth = MaskinportenAuth.from_env(environ=environ | {"MASKINPORTEN_ENV": maskinporten_emulator.issuer})
    assert auth.environment.token_endpoint == maskinporten_emulator.environment.token_endpoint


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("staging", "must be 'test', 'prod'"),
        ("http://maskinporten.example/", "https"),
        ("http://127.0.0.1:1/", "could not read metadata"),
    ],
)
def test_env_bad_values(environ: dict[str, str], value: str, problem: str) -> None:
    error = config_error(environ | {"MASKINPORTEN_ENV": value})
    assert error.field == "MASKINPORTEN_ENV"
    assert problem in error.problem


# MASKINPORTEN_CLIENT_ID


@pytest.mark.parametrize(
    ("value", "problem"), [(None, "is not set"), ("", "is empty"), ("  ", "is empty"), ("a b", "whitespace")]
)
def test_client_id_bad_values(environ: dict[str, str], value: str | None, problem: str) -> None:
    if value is None:
        del environ["MASKINPORTEN_CLIENT_ID"]
    else:
        environ["MASKINPORTEN_CLIENT_ID"] = value
    error = config_error(environ)
    assert error.field == "MASKINPORTEN_CLIENT_ID"
    assert problem in error.problem


# MASKINPORTEN_SCOPES


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("a:b", ("a:b",)),
        ("a:b c:d", ("a:b", "c:d")),
        ("a:b,c:d", ("a:b", "c:d")),
        (" a:b ,  c:d\te:f ", ("a:b", "c:d", "e:f")),
        ("a:b a:b", ("a:b",)),
    ],
)
def test_scopes_separated_by_spaces_or_commas(environ: dict[str, str], value: str, expected: tuple[str, ...]) -> None:
    assert MaskinportenAuth.from_env(environ=environ | {"MASKINPORTEN_SCOPES": value}).scopes == expected


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (None, "is not set"),
        ("", "is empty"),
        (" , ", "at least one scope is required"),
        ('a:"b"', "not a valid OAuth scope"),
    ],
)
def test_scopes_bad_values(environ: dict[str, str], value: str | None, problem: str) -> None:
    if value is None:
        del environ["MASKINPORTEN_SCOPES"]
    else:
        environ["MASKINPORTEN_SCOPES"] = value
    error = config_error(environ)
    assert error.field == "MASKINPORTEN_SCOPES"
    assert problem in error.problem


# MASKINPORTEN_KEY, _KID, _KEY_PASSWORD, _KEY_PASSWORD_FILE


def test_private_jwk_file(
    environ: dict[str, str], tmp_path: Path, rsa_key: rsa.RSAPrivateKey, private_jwk: Callable[..., dict[str, str]]
) -> None:
    path = tmp_path / "key.jwk.json"
    path.write_text(json.dumps(private_jwk(rsa_key, kid="from-jwk")))
    del environ["MASKINPORTEN_KID"]
    assert MaskinportenAuth.from_env(environ=environ | {"MASKINPORTEN_KEY": path.as_uri()}).signer.kid == "from-jwk"


def test_encrypted_pem_with_password(environ: dict[str, str], encrypted_pem_file: Path) -> None:
    environ |= {"MASKINPORTEN_KEY": encrypted_pem_file.as_uri(), "MASKINPORTEN_KEY_PASSWORD": "correct horse"}
    assert MaskinportenAuth.from_env(environ=environ).signer.kid == "6lBmeUGHQN"


def test_password_file_drops_one_trailing_newline(
    environ: dict[str, str], encrypted_pem_file: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "password"
    secret.write_text("correct horse\n")
    environ |= {"MASKINPORTEN_KEY": encrypted_pem_file.as_uri(), "MASKINPORTEN_KEY_PASSWORD_FILE": str(secret)}
    assert MaskinportenAuth.from_env(environ=environ).signer.kid == "6lBmeUGHQN"


def test_pkcs12_sends_x5c(environ: dict[str, str], p12_file: Path) -> None:
    del environ["MASKINPORTEN_KID"]
    environ |= {
        "MASKINPORTEN_KEY": "pkcs12://" + p12_file.as_uri().removeprefix("file://"),
        "MASKINPORTEN_KEY_PASSWORD": "p12-secret",
    }
    signer = MaskinportenAuth.from_env(environ=environ).signer
    assert signer.kid is None
    assert signer.x5c is not None
    assert len(signer.x5c) == 3


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (None, "is not set"),
        ("", "is empty"),
        ("/nonexistent/key.pem", "cannot read"),
        ("no-such-key.pem", "cannot read"),
        ("ftp://example/key.pem", "unknown key URI scheme"),
        ("file:///nonexistent/key.pem", "cannot read"),
        ("file://host/key.pem", "expected file:///absolute/path"),
    ],
)
def test_key_bad_values(environ: dict[str, str], value: str | None, problem: str) -> None:
    if value is None:
        del environ["MASKINPORTEN_KEY"]
    else:
        environ["MASKINPORTEN_KEY"] = value
    error = config_error(environ)
    assert error.field == "MASKINPORTEN_KEY"
    assert problem in error.problem


def test_key_as_a_bare_path(
    environ: dict[str, str], pem_file: Path, p12_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    signer = MaskinportenAuth.from_env(environ=environ | {"MASKINPORTEN_KEY": str(pem_file)}).signer
    assert signer.public_jwk()["n"] == LocalKeySigner.from_pem_file(pem_file, kid="k").public_jwk()["n"]
    monkeypatch.chdir(pem_file.parent)
    relative = MaskinportenAuth.from_env(environ=environ | {"MASKINPORTEN_KEY": pem_file.name}).signer
    assert relative.public_jwk() == signer.public_jwk()
    del environ["MASKINPORTEN_KID"]
    certificate = MaskinportenAuth.from_env(
        environ=environ | {"MASKINPORTEN_KEY": str(p12_file), "MASKINPORTEN_KEY_PASSWORD": "p12-secret"}
    ).signer
    assert certificate.x5c  # a .p12 path is PKCS#12


def test_key_file_that_is_no_key(environ: dict[str, str], tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_text("-----BEGIN NOTHING-----\n")
    error = config_error(environ | {"MASKINPORTEN_KEY": junk.as_uri()})
    assert (error.field, error.problem) == ("MASKINPORTEN_KEY", "is not a PEM private key")


def test_key_too_small(environ: dict[str, str], tmp_path: Path) -> None:
    small = tmp_path / "small.pem"
    small.write_bytes(
        rsa.generate_private_key(public_exponent=65537, key_size=1024).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    error = config_error(environ | {"MASKINPORTEN_KEY": small.as_uri()})
    assert error.field == "MASKINPORTEN_KEY"
    assert "2048" in error.problem


@pytest.mark.parametrize("value", ["a\tb", "a\x01b"])
def test_kid_bad_values(environ: dict[str, str], value: str) -> None:
    assert config_error(environ | {"MASKINPORTEN_KID": value}).field == "MASKINPORTEN_KID"


def test_a_missing_kid_names_the_kid_variable(environ: dict[str, str]) -> None:
    del environ["MASKINPORTEN_KID"]
    error = config_error(environ)
    assert (error.field, error.problem.startswith("is missing")) == ("MASKINPORTEN_KID", True)


def test_a_missing_kid_with_the_signer_given_names_kid(environ: dict[str, str], rsa_key: rsa.RSAPrivateKey) -> None:
    error = config_error(environ, signer=LocalKeySigner(rsa_key))
    assert error.field == "kid"


def test_kid_with_pkcs12_is_refused(environ: dict[str, str], p12_file: Path) -> None:
    environ |= {
        "MASKINPORTEN_KEY": "pkcs12://" + p12_file.as_uri().removeprefix("file://"),
        "MASKINPORTEN_KEY_PASSWORD": "p12-secret",
    }
    error = config_error(environ)
    assert (error.field, "x5c" in error.problem) == ("MASKINPORTEN_KID", True)


def test_encrypted_pem_without_password(environ: dict[str, str], encrypted_pem_file: Path) -> None:
    error = config_error(environ | {"MASKINPORTEN_KEY": encrypted_pem_file.as_uri()})
    assert (error.field, "password is required" in error.problem) == ("MASKINPORTEN_KEY_PASSWORD", True)


def test_wrong_password(environ: dict[str, str], encrypted_pem_file: Path, make_secret: Callable[[], str]) -> None:
    wrong = make_secret()
    environ |= {"MASKINPORTEN_KEY": encrypted_pem_file.as_uri(), "MASKINPORTEN_KEY_PASSWORD": wrong}
    error = config_error(environ)
    assert (error.field, "is wrong" in error.problem) == ("MASKINPORTEN_KEY_PASSWORD", True)
    assert wrong not in str(error) and wrong not in repr(error)  # the password itself is never shown


def test_wrong_password_from_file_names_the_file_variable(
    environ: dict[str, str], encrypted_pem_file: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "password"
    secret.write_text("wrong\n")
    environ |= {"MASKINPORTEN_KEY": encrypted_pem_file.as_uri(), "MASKINPORTEN_KEY_PASSWORD_FILE": str(secret)}
    assert config_error(environ).field == "MASKINPORTEN_KEY_PASSWORD_FILE"


def test_password_for_an_unencrypted_key(environ: dict[str, str]) -> None:
    error = config_error(environ | {"MASKINPORTEN_KEY_PASSWORD": "unneeded"})
    assert (error.field, error.problem) == ("MASKINPORTEN_KEY_PASSWORD", "was given, but the PEM key is not encrypted")


@pytest.mark.parametrize(
    ("content", "problem"),
    [(None, "cannot read"), ("", "is empty"), ("\n", "is empty")],
    ids=["missing", "empty", "nl"],
)
def test_password_file_bad_values(environ: dict[str, str], tmp_path: Path, content: str | None, problem: str) -> None:
    path = tmp_path / "password"
    if content is not None:
        path.write_text(content)
    error = config_error(environ | {"MASKINPORTEN_KEY_PASSWORD_FILE": str(path)})
    assert error.field == "MASKINPORTEN_KEY_PASSWORD_FILE"
    assert problem in error.problem


def test_a_password_file_path_with_a_nul_byte_is_a_configuration_error(environ: dict[str, str]) -> None:
    error = config_error(environ | {"MASKINPORTEN_KEY_PASSWORD_FILE": "secrets/\x00password"})
    assert error.field == "MASKINPORTEN_KEY_PASSWORD_FILE"
    assert "not a usable file path" in error.problem


def test_password_and_password_file_together(environ: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "password"
    path.write_text("x")
    error = config_error(environ | {"MASKINPORTEN_KEY_PASSWORD": "x", "MASKINPORTEN_KEY_PASSWORD_FILE": str(path)})
    assert (error.field, "not both" in error.problem) == ("MASKINPORTEN_KEY_PASSWORD_FILE", True)


def test_password_for_a_remote_key(environ: dict[str, str]) -> None:
    error = config_error(environ | {"MASKINPORTEN_KEY": "awskms:///alias/mp", "MASKINPORTEN_KEY_PASSWORD": "x"})
    assert (error.field, error.problem) == (
        "MASKINPORTEN_KEY_PASSWORD",
        "applies only to file: and pkcs12: keys, not awskms:",
    )


# Key URIs of the backends

BACKENDS = [
    ("maskinporten_auth_awskms", "awskms:///alias/maskinporten", "AwsKmsSigner", "awskms://host/alias/x"),
    (
        "maskinporten_auth_vault",
        "vault-transit://transit/maskinporten?version=2",
        "VaultTransitSigner",
        "vault-transit://transit",
    ),
    (
        "maskinporten_auth_azure",
        "azurekv://myvault.vault.azure.net/keys/maskinporten",
        "AzureKeyVaultSigner",
        "azurekv://myvault.vault.azure.net/secrets/x",
    ),
]


@pytest.mark.parametrize(("module", "uri", "signer_class", "bad_uri"), BACKENDS, ids=[b[0] for b in BACKENDS])
def test_backend_key_uris(
    environ: dict[str, str], monkeypatch: pytest.MonkeyPatch, module: str, uri: str, signer_class: str, bad_uri: str
) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed")
    for name in ("AWS_DEFAULT_REGION", "VAULT_ADDR", "VAULT_TOKEN"):
        monkeypatch.setenv(name, {"AWS_DEFAULT_REGION": "eu-north-1"}.get(name, "http://127.0.0.1:1"))
    signer = MaskinportenAuth.from_env(environ=environ | {"MASKINPORTEN_KEY": uri}).signer
    assert type(signer).__name__ == signer_class
    assert signer.kid == "6lBmeUGHQN"
    error = config_error(environ | {"MASKINPORTEN_KEY": bad_uri})
    assert error.field == "MASKINPORTEN_KEY"


@pytest.mark.parametrize(
    ("uri", "package"),
    [
        ("awskms:///alias/mp", "maskinporten-auth[aws-kms]"),
        ("vault-transit://transit/mp", "maskinporten-auth[vault]"),
        ("azurekv://v.vault.azure.net/keys/mp", "maskinporten-auth[azure]"),
        ("pkcs11:token=hsm;object=mp?module-path=/usr/lib/softhsm/libsofthsm2.so", "maskinporten-auth[pkcs11]"),
    ],
)
def test_missing_backend_names_the_package(
    environ: dict[str, str], monkeypatch: pytest.MonkeyPatch, uri: str, package: str
) -> None:
    monkeypatch.setattr("maskinporten_auth.uri.entry_points", lambda group: [])
    error = config_error(environ | {"MASKINPORTEN_KEY": uri})
    assert error.field == "MASKINPORTEN_KEY"
    assert f"pip install '{package}'" in error.problem


# MASKINPORTEN_CONSUMER_ORG and MASKINPORTEN_RESOURCE


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("310539758", "mod-11"),
        ("0192:310539759", "without the '0192:' prefix"),
        ("31053975", "nine digits"),
        ("31053975x", "nine digits"),
    ],
)
def test_consumer_org_bad_values(environ: dict[str, str], value: str, problem: str) -> None:
    error = config_error(environ | {"MASKINPORTEN_CONSUMER_ORG": value})
    assert error.field == "MASKINPORTEN_CONSUMER_ORG"
    assert problem in error.problem


def test_empty_optional_variables_count_as_unset(environ: dict[str, str]) -> None:
    auth = MaskinportenAuth.from_env(environ=environ | {"MASKINPORTEN_CONSUMER_ORG": "", "MASKINPORTEN_RESOURCE": " "})
    assert auth.consumer_org is None
    assert auth._grants.claims.resource is None


@pytest.mark.parametrize("value", ["api.nav.no", "https://api.nav.no/a b"])
def test_resource_bad_values(environ: dict[str, str], value: str) -> None:
    error = config_error(environ | {"MASKINPORTEN_RESOURCE": value})
    assert error.field == "MASKINPORTEN_RESOURCE"


# EnvConfig, one setting at a time, and a real token


def test_env_config_reads_one_setting_at_a_time() -> None:
    config = EnvConfig(environ={"MASKINPORTEN_SCOPES": "a:b"})
    assert config.scopes() == ["a:b"]
    assert config.consumer_org() is None
    with pytest.raises(ConfigurationError, match="MASKINPORTEN_KEY: is not set"):
        config.signer()


def test_token_from_env_against_the_emulator(
    environ: dict[str, str], maskinporten_emulator: MaskinportenEmulator, rsa_key: rsa.RSAPrivateKey
) -> None:
    maskinporten_emulator.register_client(
        CLIENT_ID, orgno=SUPPLIER, scopes=[SCOPE], keys={"6lBmeUGHQN": rsa_key.public_key()}
    )
    maskinporten_emulator.delegate(CUSTOMER, SUPPLIER, SCOPE)
    environ |= {"MASKINPORTEN_ENV": maskinporten_emulator.issuer, "MASKINPORTEN_CONSUMER_ORG": CUSTOMER}
    auth = MaskinportenAuth.from_env(environ=environ)
    try:
        assert auth.get_token().count(".") == 2
    finally:
        auth.close()
