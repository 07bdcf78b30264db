"""The ``maskinporten`` command end to end: real subprocesses against the emulator, exit codes and output."""

from __future__ import annotations

import datetime
import importlib.metadata
import importlib.util
import json
import os
import queue
import re
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from jose import jwt

from maskinporten_auth import AltinnAuth, LocalKeySigner, MaskinportenAuth
from maskinporten_auth.jwk import jwk_thumbprint, public_key_from_jwk
from maskinporten_auth.testing import Fault, MaskinportenEmulator

MASKINPORTEN = Path(sys.executable).with_name("maskinporten")
CLIENT_ID = "1ab20f23-c69c-44d3-b078-a0d92083ada5"
SCOPE = "nav:oppfolgingsplan/lps.write"
CUSTOMER = "310539759"
SUPPLIER = "313042995"
KID = "6lBmeUGHQN"
PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi"}
CertificateFactory = Callable[..., x509.Certificate]


def run(
    *args: str, env: dict[str, str] | None = None, stdin: str | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``maskinporten`` without a terminal, with only the given MASKINPORTEN_* variables."""
    environ = {name: value for name, value in os.environ.items() if not name.startswith("MASKINPORTEN_")}
    return subprocess.run(
        [str(MASKINPORTEN), *args],
        env=environ | (env or {}),
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        check=False,
    )


@pytest.fixture(scope="module", autouse=True)
def _installed() -> None:
    if not MASKINPORTEN.exists():
        pytest.fail(f"the console script {MASKINPORTEN} is missing: pip install -e . first")


@pytest.fixture
def emulator(maskinporten_emulator: MaskinportenEmulator, rsa_key: rsa.RSAPrivateKey) -> MaskinportenEmulator:
    """The emulator with the supplier's integration registered, and a delegation from CUSTOMER."""
    maskinporten_emulator.register_client(CLIENT_ID, orgno=SUPPLIER, scopes=[SCOPE], keys={KID: rsa_key.public_key()})
    maskinporten_emulator.delegate(CUSTOMER, SUPPLIER, SCOPE)
    return maskinporten_emulator


@pytest.fixture
def config(emulator: MaskinportenEmulator, pem_file: Path) -> dict[str, str]:
    return {
        "MASKINPORTEN_ENV": emulator.issuer,
        "MASKINPORTEN_CLIENT_ID": CLIENT_ID,
        "MASKINPORTEN_SCOPES": SCOPE,
        "MASKINPORTEN_KEY": pem_file.as_uri(),
        "MASKINPORTEN_KID": KID,
    }


# --help and usage


def test_help_lists_commands_and_exit_statuses() -> None:
    result = run("--help")
    assert result.returncode == 0
    for text in ("keygen", "jwk", "token", "decode", "check", "doctor", "emulator", "exit status", "3  Maskinporten"):
        assert text in result.stdout


def test_version_names_the_package_and_every_installed_backend() -> None:
    result = run("--version")
    assert result.returncode == 0
    lines = [line.split(" ") for line in result.stdout.splitlines()]
    assert lines[0] == ["maskinporten-auth", importlib.metadata.version("maskinporten-auth")]
    backends = {name for name, _ in lines[1:]}
    installed = {
        name
        for name in ("maskinporten-auth-awskms", "maskinporten-auth-vault", "maskinporten-auth-redis")
        if importlib.util.find_spec(name.replace("-", "_")) is not None
    }
    assert installed <= backends
    for name, version in lines[1:]:
        assert version == importlib.metadata.version(name)


@pytest.mark.parametrize("command", ["keygen", "jwk", "token", "decode", "check", "doctor", "emulator"])
def test_every_command_has_help_with_examples_or_options(command: str) -> None:
    result = run(command, "--help")
    assert result.returncode == 0
    assert result.stdout.startswith("usage: maskinporten " + command)


@pytest.mark.parametrize("args", [[], ["frobnicate"], ["keygen"], ["token", "--bogus"]])
def test_usage_errors_exit_2(args: list[str]) -> None:
    result = run(*args)
    assert result.returncode == 2
    assert result.stdout == ""
    assert "usage:" in result.stderr


# keygen


def test_keygen_writes_owner_only_key_and_prints_public_jwk(tmp_path: Path) -> None:
    result = run("keygen", "new.pem", "--bits", "2048", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    path = tmp_path / "new.pem"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    assert key.key_size == 2048
    jwk = json.loads(result.stdout)
    assert not PRIVATE_MEMBERS & set(jwk)
    assert public_key_from_jwk(jwk).public_numbers() == key.public_key().public_numbers()
    assert jwk["kid"] == jwk_thumbprint(key.public_key())
    assert (jwk["alg"], jwk["use"]) == ("RS256", "sig")
    assert f"export MASKINPORTEN_KEY={path.as_uri()}" in result.stderr
    assert f"export MASKINPORTEN_KID={jwk['kid']}" in result.stderr


def test_keygen_defaults_to_3072_bits_and_takes_kid_and_alg(tmp_path: Path) -> None:
    result = run("keygen", str(tmp_path / "k.pem"), "--kid", "2026-01", "--alg", "RS512")
    assert result.returncode == 0, result.stderr
    jwk = json.loads(result.stdout)
    assert (jwk["kid"], jwk["alg"], public_key_from_jwk(jwk).key_size) == ("2026-01", "RS512", 3072)


def test_keygen_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "existing.pem"
    path.write_text("precious")
    result = run("keygen", str(path))
    assert result.returncode == 2
    assert "refusing to overwrite" in result.stderr
    assert result.stdout == ""
    assert path.read_text() == "precious"


def test_keygen_creates_missing_directories_owner_only(tmp_path: Path) -> None:
    result = run("keygen", "secrets/maskinporten/key.pem", "--bits", "2048", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for directory in (tmp_path / "secrets", tmp_path / "secrets" / "maskinporten"):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    path = tmp_path / "secrets" / "maskinporten" / "key.pem"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.listdir(path.parent) == ["key.pem"]
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    assert public_key_from_jwk(json.loads(result.stdout)).public_numbers() == key.public_key().public_numbers()


def test_keygen_failure_prints_nothing_and_leaves_nothing(tmp_path: Path) -> None:
    result = run("keygen", f"secrets/{'k' * 300}.pem", "--bits", "2048", cwd=tmp_path)
    assert result.returncode == 2
    assert "cannot create" in result.stderr
    assert result.stdout == ""
    assert os.listdir(tmp_path) == []


def test_keygen_refuses_small_keys(tmp_path: Path) -> None:
    result = run("keygen", str(tmp_path / "k.pem"), "--bits", "1024")
    assert result.returncode == 2
    assert not (tmp_path / "k.pem").exists()


def test_keygen_encrypts_with_a_passphrase_from_the_environment(tmp_path: Path, make_secret: Callable[[], str]) -> None:
    path = tmp_path / "k.pem"
    passphrase = make_secret()
    result = run(
        "keygen", str(path), "--bits", "2048", "--passphrase-env", "NEW_KEY_PASS", env={"NEW_KEY_PASS": passphrase}
    )
    assert result.returncode == 0, result.stderr
    assert passphrase not in result.stdout + result.stderr
    assert b"ENCRYPTED" in path.read_bytes()
    serialization.load_pem_private_key(path.read_bytes(), password=passphrase.encode())


def test_keygen_encrypts_with_a_passphrase_file(tmp_path: Path) -> None:
    (tmp_path / "pass").write_text("from-a-file\n")
    path = tmp_path / "k.pem"
    result = run("keygen", str(path), "--bits", "2048", "--passphrase-file", str(tmp_path / "pass"))
    assert result.returncode == 0, result.stderr
    serialization.load_pem_private_key(path.read_bytes(), password=b"from-a-file")


def test_keygen_encrypt_needs_a_terminal_or_a_source(tmp_path: Path) -> None:
    result = run("keygen", str(tmp_path / "k.pem"), "--encrypt")
    assert result.returncode == 2
    assert "--passphrase-env or --passphrase-file" in result.stderr
    assert not (tmp_path / "k.pem").exists()


def test_keygen_has_no_passphrase_option_on_the_command_line(tmp_path: Path) -> None:
    assert run("keygen", str(tmp_path / "k.pem"), "--passphrase", "x").returncode == 2


# jwk


@pytest.mark.parametrize("form", ["path", "uri", "variable"])
def test_jwk_of_a_local_key(pem_file: Path, rsa_key: rsa.RSAPrivateKey, form: str) -> None:
    args = {"path": [str(pem_file)], "uri": [pem_file.as_uri()], "variable": []}[form]
    result = run("jwk", *args, env={"MASKINPORTEN_KEY": pem_file.as_uri(), "MASKINPORTEN_KID": KID})
    assert result.returncode == 0, result.stderr
    jwk = json.loads(result.stdout)
    assert jwk["kid"] == KID
    assert not PRIVATE_MEMBERS & set(jwk)
    assert public_key_from_jwk(jwk).public_numbers() == rsa_key.public_key().public_numbers()


def test_jwk_set_and_pem(pem_file: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    jwks = json.loads(run("jwk", str(pem_file), "--kid", KID, "--set").stdout)
    assert [key["kid"] for key in jwks["keys"]] == [KID]
    pem = run("jwk", str(pem_file), "--pem").stdout
    loaded = serialization.load_pem_public_key(pem.encode())
    assert isinstance(loaded, rsa.RSAPublicKey)
    assert loaded.public_numbers() == rsa_key.public_key().public_numbers()


def test_jwk_without_kid_suggests_the_thumbprint(pem_file: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    result = run("jwk", str(pem_file))
    thumbprint = jwk_thumbprint(rsa_key.public_key())
    assert json.loads(result.stdout)["kid"] == thumbprint
    assert thumbprint in result.stderr


def test_jwk_of_an_encrypted_key(tmp_path: Path, make_secret: Callable[[], str]) -> None:
    path = tmp_path / "k.pem"
    password = make_secret()  # not "pw": the random thumbprint printed to stderr holds "pw" one time in a hundred
    run("keygen", str(path), "--bits", "2048", "--passphrase-env", "P", env={"P": password})
    missing = run("jwk", str(path))
    assert missing.returncode == 2
    assert "MASKINPORTEN_KEY_PASSWORD: the PEM key is encrypted" in missing.stderr
    given = run("jwk", str(path), env={"MASKINPORTEN_KEY_PASSWORD": password})
    assert given.returncode == 0, given.stderr
    assert password not in given.stdout + given.stderr


def test_jwk_of_a_pkcs12_certificate_has_x5c(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey, certificate_chain: tuple[list[x509.Certificate], rsa.RSAPrivateKey]
) -> None:
    chain, _ = certificate_chain
    path = tmp_path / "virksomhet.p12"
    path.write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"v", rsa_key, chain[0], chain[1:], serialization.BestAvailableEncryption(b"pw")
        )
    )
    result = run("jwk", str(path), env={"MASKINPORTEN_KEY_PASSWORD": "pw"})
    assert result.returncode == 0, result.stderr
    assert len(json.loads(result.stdout)["x5c"]) == 3


def rsa_public_members(key: rsa.RSAPrivateKey) -> dict[str, str]:
    jwk = LocalKeySigner(key, kid="x").public_jwk()
    return {"n": jwk["n"], "e": jwk["e"]}


@pytest.mark.parametrize("form", ["jwk", "jwk-set", "pem"])
def test_jwk_of_a_public_key_file(tmp_path: Path, rsa_key: rsa.RSAPrivateKey, form: str) -> None:
    public = tmp_path / "public.key"
    members = rsa_public_members(rsa_key)
    if form == "pem":
        public.write_bytes(
            rsa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
    else:
        jwk = {"kty": "RSA", "kid": "partner", "alg": "RS512", **members}
        public.write_text(json.dumps({"keys": [jwk]} if form == "jwk-set" else jwk))
    result = run("jwk", str(public))
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert (document["n"], document["e"]) == (members["n"], members["e"])
    if form == "pem":
        assert (document["kid"], document["alg"]) == (jwk_thumbprint(rsa_key.public_key()), "RS256")
    else:
        assert (document["kid"], document["alg"]) == ("partner", "RS512")
    assert not PRIVATE_MEMBERS & set(document)
    assert run("jwk", public.as_uri(), "--kid", "mine").returncode == 0
    assert json.loads(run("jwk", public.as_uri(), "--kid", "mine").stdout)["kid"] == "mine"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["/nonexistent/key.pem"], "KEY: cannot read"),
        (["--key", "/nonexistent/key.pem"], "--key: cannot read"),
        (["ftp://x/key"], "KEY: unknown key URI scheme"),
        ([], "--key (or MASKINPORTEN_KEY): is not set"),
    ],
)
def test_jwk_errors(args: list[str], message: str) -> None:
    result = run("jwk", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert result.stdout == ""


# token


def test_token_prints_only_the_token(config: dict[str, str], emulator: MaskinportenEmulator) -> None:
    result = run("token", env=config)
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert result.stdout == token + "\n"
    assert token.count(".") == 2
    assert emulator.tokens_issued == 1


def test_token_json_has_claims_and_expiry(config: dict[str, str]) -> None:
    result = run("token", "--json", "--consumer-org", CUSTOMER, env=config)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["expires_in"] == 120
    assert datetime.datetime.fromisoformat(document["expires_at"]) > datetime.datetime.now(datetime.timezone.utc)
    assert document["header"]["alg"] == "RS256"
    assert document["claims"]["consumer"]["ID"] == f"0192:{CUSTOMER}"
    assert document["claims"]["supplier"]["ID"] == f"0192:{SUPPLIER}"
    assert document["access_token"].count(".") == 2


def test_token_options_override_the_environment(emulator: MaskinportenEmulator, pem_file: Path) -> None:
    result = run(
        "token",
        *("--env", emulator.issuer, "--client-id", CLIENT_ID, "--scope", SCOPE, "--key", str(pem_file)),
        *("--kid", KID),
        env={"MASKINPORTEN_CLIENT_ID": "someone-else", "MASKINPORTEN_SCOPES": "other:scope"},
    )
    assert result.returncode == 0, result.stderr


def test_token_refused_exits_1_with_the_mp_code(config: dict[str, str]) -> None:
    result = run("token", "--consumer-org", "313990265", env=config)
    assert result.returncode == 1
    assert result.stdout == ""
    assert "MP-251" in result.stderr
    assert "daglig leder" in result.stderr


def test_token_unknown_scope_exits_1(config: dict[str, str]) -> None:
    result = run("token", "--scope", "nav:not-mine", env=config)
    assert result.returncode == 1
    assert "invalid_scope" in result.stderr


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"MASKINPORTEN_CLIENT_ID": None}, "--client-id (or MASKINPORTEN_CLIENT_ID): is not set"),
        ({"MASKINPORTEN_KID": None}, "--kid (or MASKINPORTEN_KID): is missing"),
        ({"MASKINPORTEN_CONSUMER_ORG": "123456789"}, "MASKINPORTEN_CONSUMER_ORG: '123456789' fails"),
        ({"MASKINPORTEN_ENV": "staging"}, "MASKINPORTEN_ENV: must be"),
    ],
)
def test_token_configuration_errors_exit_2(
    config: dict[str, str], changes: dict[str, str | None], message: str
) -> None:
    for name, value in changes.items():
        if value is None:
            del config[name]
        else:
            config[name] = value
    result = run("token", env=config)
    assert result.returncode == 2
    assert message in result.stderr


def test_token_errors_name_the_option_that_set_the_value(config: dict[str, str]) -> None:
    result = run("token", "--consumer-org", "0192:310539759", env=config)
    assert result.returncode == 2
    assert "--consumer-org: give the bare nine digits" in result.stderr


def test_token_unavailable_exits_3(config: dict[str, str], emulator: MaskinportenEmulator) -> None:
    emulator.inject_fault(Fault.server_error(503), times=10)
    result = run("token", env=config)
    assert result.returncode == 3
    assert "503" in result.stderr


def test_token_unreachable_issuer_exits_3(config: dict[str, str], unused_port: int) -> None:
    config["MASKINPORTEN_ENV"] = f"http://127.0.0.1:{unused_port}/"
    for command in ("token", "doctor"):
        result = run(command, env=config)
        assert result.returncode == 3, result.stderr
        assert "could not read metadata" in result.stdout + result.stderr


def test_token_issuer_without_its_trailing_slash_hints_at_it(
    config: dict[str, str], emulator: MaskinportenEmulator
) -> None:
    config["MASKINPORTEN_ENV"] = emulator.issuer.removesuffix("/")
    result = run("token", env=config)
    assert result.returncode == 2
    assert f"the trailing slash differs; use {emulator.issuer!r} exactly" in result.stderr


# decode


@pytest.fixture
def token(config: dict[str, str]) -> str:
    return run("token", "--consumer-org", CUSTOMER, env=config).stdout.strip()


def test_decode_from_stdin_and_verify(token: str, emulator: MaskinportenEmulator) -> None:
    result = run("decode", "--verify", "--env", emulator.issuer, stdin=f"Bearer {token}\n")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["claims"]["consumer"]["ID"] == f"0192:{CUSTOMER}"
    assert document["verified"]["issuer"] == emulator.issuer
    assert "exp_utc" in document


def test_decode_argument_without_verification(token: str) -> None:
    result = run("decode", token)
    assert result.returncode == 0
    assert "verified" not in json.loads(result.stdout)


def test_decode_verify_fails_for_a_tampered_token(token: str, emulator: MaskinportenEmulator) -> None:
    header, claims, signature = token.split(".")
    tampered = f"{header}.{claims}.{signature[:-4]}AAAA"
    result = run("decode", "--verify", tampered, env={"MASKINPORTEN_ENV": emulator.issuer})
    assert result.returncode == 1
    assert "verification failed" in result.stderr


def test_decode_verify_fails_against_another_issuer(token: str) -> None:
    with MaskinportenEmulator() as other:
        result = run("decode", "--verify", "--env", other.issuer, token)
    assert result.returncode == 1
    assert "no key with kid" in result.stderr


def test_decode_rejects_what_is_not_a_jwt() -> None:
    result = run("decode", stdin="not-a-token")
    assert result.returncode == 2
    assert "not a JWT" in result.stderr


# doctor


def test_doctor_all_checks_pass(config: dict[str, str]) -> None:
    result = run("doctor", "--consumer-org", CUSTOMER, env=config)
    assert result.returncode == 0, result.stdout + result.stderr
    for step in ("environment", "client id", "scopes", "consumer_org", "key", "kid", "signing", "clock", "token"):
        assert f"[ ok ] {step}:" in result.stdout
    assert "consumer 0192:310539759" in result.stdout
    assert "shared cache" not in result.stdout  # none configured: nothing to say
    assert "All checks passed." in result.stdout


def test_doctor_explains_a_missing_delegation(config: dict[str, str]) -> None:
    result = run("doctor", "--consumer-org", "313990265", env=config)
    assert result.returncode == 1
    assert "[FAIL] token:" in result.stdout
    assert "MP-251" in result.stdout
    assert "Give and remove API access" in result.stdout


def test_doctor_explains_an_unknown_kid(config: dict[str, str]) -> None:
    result = run("doctor", "--kid", "not-registered", env=config)
    assert result.returncode == 1
    assert "Samarbeidsportalen" in result.stdout


def test_doctor_reports_configuration_and_skips_the_token(config: dict[str, str]) -> None:
    del config["MASKINPORTEN_CLIENT_ID"]
    del config["MASKINPORTEN_KID"]
    result = run("doctor", env=config)
    assert result.returncode == 2
    assert "[FAIL] client id: --client-id (or MASKINPORTEN_CLIENT_ID): is not set" in result.stdout
    assert "[FAIL] kid: --kid (or MASKINPORTEN_KID): is missing, and there is no certificate chain" in result.stdout
    assert "[skip] token" in result.stdout


def test_doctor_finds_a_clock_offset(rsa_key: rsa.RSAPrivateKey, pem_file: Path) -> None:
    with MaskinportenEmulator(clock_offset=60) as skewed:
        skewed.register_client(CLIENT_ID, orgno=SUPPLIER, scopes=[SCOPE], keys={KID: rsa_key.public_key()})
        result = run(
            "doctor",
            env={
                "MASKINPORTEN_ENV": skewed.issuer,
                "MASKINPORTEN_CLIENT_ID": CLIENT_ID,
                "MASKINPORTEN_SCOPES": SCOPE,
                "MASKINPORTEN_KEY": pem_file.as_uri(),
                "MASKINPORTEN_KID": KID,
            },
        )
    assert result.returncode == 1
    assert re.search(r"\[FAIL\] clock: this machine is -(59|60)\.\d s off Maskinporten's clock", result.stdout)


def test_doctor_unreachable_exits_3(config: dict[str, str], emulator: MaskinportenEmulator) -> None:
    emulator.inject_fault(Fault.server_error(503), times=10)
    result = run("doctor", env=config)
    assert result.returncode == 3
    assert "status.digdir.no" in result.stdout


def test_doctor_warns_about_a_certificate_expiring_soon(
    tmp_path: Path,
    rsa_key: rsa.RSAPrivateKey,
    make_certificate: CertificateFactory,
    maskinporten_emulator: MaskinportenEmulator,
) -> None:
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = make_certificate(rsa_key, "REGNSKAP AS", not_after=now + datetime.timedelta(days=10))
    path = tmp_path / "virksomhet.p12"
    path.write_bytes(
        pkcs12.serialize_key_and_certificates(b"v", rsa_key, certificate, None, serialization.NoEncryption())
    )
    maskinporten_emulator.register_client(CLIENT_ID, orgno=SUPPLIER, scopes=[SCOPE], certificates=[certificate])
    result = run(
        "doctor",
        *("--env", maskinporten_emulator.issuer, "--client-id", CLIENT_ID, "--scope", SCOPE, "--key", str(path)),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[warn] certificate:" in result.stdout
    assert "renew it" in result.stdout
    assert f"[ ok ] orgnr: the certificate is issued to {SUPPLIER}" in result.stdout
    assert "[ ok ] x5c: a chain of 1 certificate(s)" in result.stdout


# emulator


class RunningEmulator:
    """``maskinporten emulator`` in a subprocess; its stdout lines arrive on a queue."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [str(MASKINPORTEN), "emulator", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={name: value for name, value in os.environ.items() if not name.startswith("MASKINPORTEN_")},
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def exports(self) -> dict[str, str]:
        """Collect the ``export`` lines, up to the last one (the key's)."""
        exports: dict[str, str] = {}
        while "MASKINPORTEN_KEY" not in exports:
            line = self.lines.get(timeout=30)
            assert line is not None, "the emulator ended before printing its exports"
            if line.startswith("export "):
                name, _, value = line.removeprefix("export ").partition("=")
                exports[name] = value.strip("'")
        return exports

    def stop(self) -> tuple[int, str]:
        self.process.terminate()
        _, stderr = self.process.communicate(timeout=30)
        return self.process.returncode, stderr


@pytest.fixture
def running_emulator(pem_file: Path) -> Iterator[RunningEmulator]:
    emulator = RunningEmulator("--key", str(pem_file), "--kid", KID, "--scope", SCOPE, "--delegate", CUSTOMER)
    yield emulator
    if emulator.process.poll() is None:
        emulator.stop()


def test_emulator_command_serves_what_its_exports_describe(running_emulator: RunningEmulator, pem_file: Path) -> None:
    exports = running_emulator.exports()
    assert exports["MASKINPORTEN_ENV"].startswith("http://127.0.0.1:")
    assert exports["MASKINPORTEN_ENV"].endswith("/")
    assert exports["MASKINPORTEN_KEY"] == pem_file.as_uri()
    assert (exports["MASKINPORTEN_KID"], exports["MASKINPORTEN_SCOPES"]) == (KID, SCOPE)
    own = run("token", "--json", env=exports)
    assert own.returncode == 0, own.stderr
    assert json.loads(own.stdout)["claims"]["consumer"]["ID"] == "0192:313042995"
    delegated = run("token", "--consumer-org", CUSTOMER, env=exports)
    assert delegated.returncode == 0, delegated.stderr
    code, stderr = running_emulator.stop()
    assert code == 0
    assert f"issuer {exports['MASKINPORTEN_ENV']} " in stderr
    assert "Stopping the emulator." in stderr


def test_emulator_command_with_a_public_jwk(tmp_path: Path, pem_file: Path) -> None:
    (tmp_path / "public.json").write_text(run("jwk", str(pem_file), "--kid", "partner").stdout)
    emulator = RunningEmulator("--public-jwk", str(tmp_path / "public.json"), "--scope", SCOPE)
    try:
        lines = [emulator.lines.get(timeout=30) for _ in range(5)]
    finally:
        emulator.stop()
    assert "export MASKINPORTEN_KID=partner" in lines
    assert "# set MASKINPORTEN_KEY to the private key of the registered JWK" in lines


def test_emulator_command_without_a_kid_registers_the_thumbprint(pem_file: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    emulator = RunningEmulator("--key", str(pem_file), "--scope", SCOPE)
    try:
        exports = emulator.exports()
        thumbprint = jwk_thumbprint(rsa_key.public_key())
        assert exports["MASKINPORTEN_KID"] == thumbprint
        assert json.loads(run("jwk", str(pem_file)).stdout)["kid"] == thumbprint  # the kid `jwk` suggests
        token = run("token", env=exports)
        assert token.returncode == 0, token.stderr
    finally:
        _, stderr = emulator.stop()
    assert f"registering the key under its thumbprint: {thumbprint}" in stderr


def test_emulator_command_with_a_public_jwk_without_kid(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    public = tmp_path / "public.json"
    public.write_text(json.dumps({"kty": "RSA", **rsa_public_members(rsa_key)}))
    emulator = RunningEmulator("--public-jwk", str(public), "--scope", SCOPE)
    try:
        lines = [emulator.lines.get(timeout=30) for _ in range(4)]
    finally:
        emulator.stop()
    assert f"export MASKINPORTEN_KID={jwk_thumbprint(rsa_key.public_key())}" in lines


def test_emulator_command_needs_scopes(pem_file: Path) -> None:
    result = run("emulator", "--key", str(pem_file), "--kid", KID)
    assert result.returncode == 2
    assert "--scope (or MASKINPORTEN_SCOPES): is not set" in result.stderr


def test_emulator_command_with_a_system_user_and_the_altinn_exchange(pem_file: Path) -> None:
    emulator = RunningEmulator("--key", str(pem_file), "--kid", KID, "--scope", SCOPE, "--systemuser", CUSTOMER)
    try:
        exports = emulator.exports()
        notes = [emulator.lines.get(timeout=30) for _ in range(2)]
        auth = MaskinportenAuth(
            exports["MASKINPORTEN_CLIENT_ID"],
            SCOPE,
            LocalKeySigner.from_pem_file(pem_file, kid=KID),
            environment=exports["MASKINPORTEN_ENV"],
        )
        token = jwt.get_unverified_claims(auth.with_systemuser(CUSTOMER).get_token())
        altinn = AltinnAuth(auth.with_systemuser(CUSTOMER), environment=exports["MASKINPORTEN_ENV"].rstrip("/"))
        assert jwt.get_unverified_claims(altinn.get_token())["authorization_details"] == token["authorization_details"]
    finally:
        emulator.stop()
    assert notes[0] == f"# {CUSTOMER} approved a system user: auth.with_systemuser('{CUSTOMER}')"
    assert notes[1].startswith("# Altinn's token exchange: AltinnAuth(auth, environment='http://127.0.0.1:")
