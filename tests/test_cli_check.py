"""``maskinporten check``: readiness of many customers at once, against the emulator, run in-process."""

from __future__ import annotations

import base64
import io
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from maskinporten_auth import LocalKeySigner, SigningError
from maskinporten_auth.cli import main
from maskinporten_auth.cli.check import _INVALID_HINT, Customer, Outcome, _hints
from maskinporten_auth.testing import Fault, MaskinportenEmulator, organisation_numbers

CLIENT_ID = "1ab20f23-c69c-44d3-b078-a0d92083ada5"
SCOPE = "nav:oppfolgingsplan/lps.write"
SUPPLIER = "313042995"
KID = "6lBmeUGHQN"
#: Customers that delegated SCOPE to SUPPLIER, and one that did not (synthetic test organisations).
DELEGATED = ("310539759", "313990265")
NOT_DELEGATED = "311654306"
#: A JWT (an access token or a grant): three base64url parts.
JWT = re.compile(r"[\w-]{8,}\.[\w-]{8,}\.[\w-]{8,}")


class Result(NamedTuple):
    code: int
    out: str
    err: str


Check = Callable[..., Result]


@pytest.fixture
def emulator(maskinporten_emulator: MaskinportenEmulator, rsa_key: rsa.RSAPrivateKey) -> MaskinportenEmulator:
    maskinporten_emulator.register_client(CLIENT_ID, orgno=SUPPLIER, scopes=[SCOPE], keys={KID: rsa_key.public_key()})
    for customer in DELEGATED:
        maskinporten_emulator.delegate(customer, SUPPLIER, SCOPE)
    # Every customer approved system users of the supplier's system (with the default and two other externalRefs).
    for customer in (*DELEGATED, NOT_DELEGATED):
        for reference in (None, "payroll-1", "x"):
            maskinporten_emulator.add_systemuser(
                customer, CLIENT_ID, system_id=f"{SUPPLIER}_payroll", external_ref=reference
            )
    return maskinporten_emulator


@pytest.fixture
def check(
    emulator: MaskinportenEmulator, pem_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Check:
    """Run ``maskinporten check ARGS`` configured for the emulator by MASKINPORTEN_* variables."""
    for name in [name for name in os.environ if name.startswith("MASKINPORTEN_")]:
        monkeypatch.delenv(name)
    config = {
        "MASKINPORTEN_ENV": emulator.issuer,
        "MASKINPORTEN_CLIENT_ID": CLIENT_ID,
        "MASKINPORTEN_SCOPES": SCOPE,
        "MASKINPORTEN_KEY": pem_file.as_uri(),
        "MASKINPORTEN_KID": KID,
        # check names its customers itself: this one is not read.
        "MASKINPORTEN_CONSUMER_ORG": NOT_DELEGATED,
    }
    for name, value in config.items():
        monkeypatch.setenv(name, value)

    def run(*args: str) -> Result:
        code = main(["check", *args])
        out, err = capsys.readouterr()
        assert not JWT.search(out + err), "a token or grant was printed"
        return Result(code, out, err)

    return run


def rows(out: str) -> dict[tuple[str, str], str]:
    """The table's (customer, kind) -> status."""
    found = {}
    for line in out.splitlines()[1:]:
        match = re.match(r"(\S+)\s{2,}(delegation|system user)\s{2,}(\S+)", line)
        if match:
            found[match[1], match[2]] = match[3]
    return found


def json_check(check: Check, *args: str) -> tuple[int, dict[str, Any]]:
    result = check(*args, "--json")
    return result.code, json.loads(result.out)


def test_every_customer_ready_exits_0(check: Check, emulator: MaskinportenEmulator) -> None:
    result = check("--consumer-org", *DELEGATED, "--systemuser", NOT_DELEGATED, f"{NOT_DELEGATED}:payroll-1")
    assert result.code == 0, result.out + result.err
    assert result.out.splitlines()[0].split() == ["CUSTOMER", "KIND", "STATUS", "DETAILS"]
    assert rows(result.out) == {
        (DELEGATED[0], "delegation"): "READY",
        (DELEGATED[1], "delegation"): "READY",
        (NOT_DELEGATED, "system user"): "READY",
        (f"{NOT_DELEGATED}:payroll-1", "system user"): "READY",
    }
    assert "4 of 4 ready, 0 refused, 0 failed" in result.out
    assert result.err == ""
    assert emulator.tokens_issued == 4
    refs = [
        detail.get("externalRef")
        for record in emulator.grants
        for detail in record.claims.get("authorization_details", [])
    ]
    assert sorted(refs, key=str) == [None, "payroll-1"]


def test_a_customer_without_delegation_is_mp_251_and_exits_1(check: Check) -> None:
    result = check("--consumer-org", DELEGATED[0], NOT_DELEGATED)
    assert result.code == 1
    assert rows(result.out) == {(DELEGATED[0], "delegation"): "READY", (NOT_DELEGATED, "delegation"): "MP-251"}
    assert f"Consumer {NOT_DELEGATED} has not delegated access to the scope {SCOPE}" in result.out
    assert "hint: the customer has not delegated this scope to you in Altinn; their daglig leder" in result.out
    assert "1 of 2 ready, 1 refused, 0 failed" in result.out


def test_a_scope_refusal(check: Check, emulator: MaskinportenEmulator) -> None:
    emulator.delegate(DELEGATED[0], SUPPLIER, "nav:other/scope")  # a scope the integration does not hold itself
    code, document = json_check(check, "--scope", "nav:other/scope", "--consumer-org", *DELEGATED)
    assert code == 1
    ready, refused = document["customers"]
    assert ready["ready"] is True
    assert refused["customer"] == DELEGATED[1]
    assert refused["status"] == "refused"
    assert (refused["code"], refused["error"]) == ("MP-200", "invalid_scope")
    assert "nav:other/scope" in refused["description"]
    assert "Samarbeidsportalen" in refused["hint"]


def test_json_shape(check: Check) -> None:
    code, document = json_check(check, "--consumer-org", DELEGATED[0], NOT_DELEGATED, "--systemuser", "310539759:x")
    assert code == 1
    assert document["ready"] is False
    assert document["summary"] == {"customers": 3, "ready": 2, "refused": 1, "failed": 0, "invalid": 0}
    fields = ["customer", "kind", "external_ref", "ready", "status", "code", "error", "description", "hint"]
    assert [list(entry) for entry in document["customers"]] == [fields] * 3
    ready, refused, systemuser = document["customers"]
    expected = {"customer": DELEGATED[0], "kind": "consumer_org", "ready": True, "status": "ready"}
    assert ready == dict.fromkeys(fields) | expected
    assert refused["ready"] is False
    assert (refused["status"], refused["code"], refused["error"]) == ("refused", "MP-251", "forbidden")
    assert refused["description"].startswith(f"Consumer {NOT_DELEGATED} has not delegated")
    assert "trace_id" in refused["description"]
    assert refused["hint"].startswith("the customer has not delegated")
    assert (systemuser["kind"], systemuser["customer"], systemuser["external_ref"]) == ("systemuser", "310539759", "x")


def test_all_ready_json(check: Check) -> None:
    code, document = json_check(check, "--systemuser", *DELEGATED)
    assert code == 0
    assert document["ready"] is True
    assert all(entry["status"] == "ready" for entry in document["customers"])


def test_customers_from_a_file(check: Check, tmp_path: Path, emulator: MaskinportenEmulator) -> None:
    customers = tmp_path / "customers.txt"
    customers.write_text(
        f"# delegations\n{DELEGATED[0]}\n  {NOT_DELEGATED}  \n\nsystemuser:{DELEGATED[1]}\n"
        f"systemuser:{DELEGATED[1]}:payroll-1\n{DELEGATED[0]}\n",
        encoding="utf-8",
    )
    result = check("--customers-file", str(customers), "--consumer-org", DELEGATED[1])
    assert result.code == 1
    assert list(rows(result.out).items()) == [
        ((DELEGATED[1], "delegation"), "READY"),
        ((DELEGATED[0], "delegation"), "READY"),
        ((NOT_DELEGATED, "delegation"), "MP-251"),
        ((DELEGATED[1], "system user"), "READY"),
        ((f"{DELEGATED[1]}:payroll-1", "system user"), "READY"),
    ]
    assert emulator.token_requests == 5  # the repeated customer is checked once


def test_customers_from_standard_input(check: Check, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{DELEGATED[0]}\nsystemuser:{DELEGATED[1]}:payroll-1\n"))
    code, document = json_check(check, "--customers-file", "-")
    assert code == 0
    customers = [(entry["customer"], entry["kind"], entry["external_ref"]) for entry in document["customers"]]
    assert customers == [(DELEGATED[0], "consumer_org", None), (DELEGATED[1], "systemuser", "payroll-1")]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--consumer-org", DELEGATED[0], "123456789"], "--consumer-org: '123456789' fails the organisation number"),
        (["--consumer-org", "31053975"], "--consumer-org: an organisation number is nine digits, got '31053975'"),
        (["--systemuser", "0192:310539759"], "--systemuser: give the bare nine digits without the '0192:' prefix"),
        (["--systemuser", "12345678x:ref"], "--systemuser: an organisation number is nine digits, got '12345678x'"),
        (
            ["--systemuser", "310539759:"],
            "--systemuser (the externalRef after ':' in '310539759:'): must be a non-empty",
        ),
        ([], "name at least one customer"),
    ],
)
def test_invalid_customers_are_usage_errors(
    check: Check, emulator: MaskinportenEmulator, args: list[str], message: str
) -> None:
    result = check(*args)
    assert result.code == 2
    assert result.out == ""
    assert f"maskinporten check: error: {message}" in result.err
    assert emulator.token_requests == 0


def test_an_invalid_line_in_the_customers_file_is_reported_and_the_rest_are_checked(
    check: Check, tmp_path: Path, emulator: MaskinportenEmulator
) -> None:
    customers = tmp_path / "customers.txt"
    customers.write_text(
        f"{DELEGATED[0]}\nsystemuser:0192:{DELEGATED[1]}\n123456789\n{NOT_DELEGATED}\n", encoding="utf-8"
    )
    result = check("--customers-file", str(customers))
    assert result.code == 2  # an invalid line outranks a refusal
    assert list(rows(result.out).items()) == [
        ((DELEGATED[0], "delegation"), "READY"),
        ((f"systemuser:0192:{DELEGATED[1]}", "system user"), "INVALID"),
        (("123456789", "delegation"), "INVALID"),
        ((NOT_DELEGATED, "delegation"), "MP-251"),
    ]
    assert f"{customers}:2: give the bare nine digits" in result.out
    assert f"{customers}:3: '123456789' fails the organisation number" in result.out
    assert "INVALID (2 customers)\n  hint: fix the line" in result.out
    assert "1 of 4 ready, 1 refused, 0 failed, 2 invalid" in result.out
    assert emulator.token_requests == 2
    code, document = json_check(check, "--customers-file", str(customers))
    assert code == 2
    assert document["summary"] == {"customers": 4, "ready": 1, "refused": 1, "failed": 0, "invalid": 2}
    invalid = document["customers"][1]
    assert (invalid["status"], invalid["ready"], invalid["customer"]) == (
        "invalid",
        False,
        f"systemuser:0192:{DELEGATED[1]}",
    )
    missing = check("--customers-file", str(tmp_path / "missing.txt"))
    assert missing.code == 2
    assert "--customers-file: cannot read" in missing.err


def test_many_refusals_print_one_line_each_and_each_hint_once(
    check: Check, tmp_path: Path, emulator: MaskinportenEmulator
) -> None:
    refused = [orgno for orgno in organisation_numbers(60) if orgno not in DELEGATED]
    customers = tmp_path / "customers.txt"
    customers.write_text("\n".join([DELEGATED[0], *refused]), encoding="utf-8")
    result = check("--customers-file", str(customers))
    assert result.code == 1
    lines = result.out.splitlines()
    table = lines[: 2 + len(refused)]
    assert table[1].startswith(DELEGATED[0])
    for line, orgno in zip(table[2:], refused, strict=True):
        assert line.startswith(orgno) and line.split()[2] == "MP-251"
    assert result.out.count("hint:") == 1
    assert f"MP-251 ({len(refused)} customers)\n  hint: the customer has not delegated this scope" in result.out
    assert lines[-1] == f"1 of {len(refused) + 1} ready, {len(refused)} refused, 0 failed"


def test_maskinporten_unavailable_exits_3(check: Check, emulator: MaskinportenEmulator) -> None:
    emulator.inject_fault(Fault.server_error(500), times=10)
    result = check("--consumer-org", DELEGATED[0])
    assert result.code == 3
    assert rows(result.out) == {(DELEGATED[0], "delegation"): "UNAVAILABLE"}
    assert "Maskinporten failed with HTTP 500" in result.out
    assert "0 of 1 ready, 0 refused, 1 failed" in result.out


def _names(signing_input: bytes, customer: str) -> bool:
    payload = signing_input.split(b".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + b"=" * (-len(payload) % 4)))
    return claims.get("consumer_org") == customer


def test_a_key_backend_failure_for_one_customer_is_a_row_and_exits_4(
    check: Check, monkeypatch: pytest.MonkeyPatch
) -> None:
    sign = LocalKeySigner.sign

    def failing_for_one(self: LocalKeySigner, signing_input: bytes) -> bytes:
        if _names(signing_input, DELEGATED[1]):
            raise SigningError("the key service timed out", backend="local", hint="is the HSM up?")
        return sign(self, signing_input)

    monkeypatch.setattr(LocalKeySigner, "sign", failing_for_one)
    result = check("--consumer-org", DELEGATED[0], DELEGATED[1], NOT_DELEGATED)
    assert result.code == 4  # the most serious outcome wins over the refusal
    assert rows(result.out) == {
        (DELEGATED[0], "delegation"): "READY",
        (DELEGATED[1], "delegation"): "SIGNING-FAILED",
        (NOT_DELEGATED, "delegation"): "MP-251",
    }
    assert "local: the key service timed out" in result.out
    assert "hint: is the HSM up?" in result.out
    code, document = json_check(check, "--consumer-org", DELEGATED[1])
    assert code == 4
    assert document["customers"][0]["status"] == "signing_failed"
    assert document["summary"]["failed"] == 1


def test_customers_are_checked_concurrently(check: Check, emulator: MaskinportenEmulator) -> None:
    emulator.inject_fault(Fault.slow(1.0), times=4)
    result = check("--consumer-org", *DELEGATED, "--systemuser", *DELEGATED)
    assert result.code == 0
    received = sorted(record.received_at for record in emulator.grants)
    assert len(received) == 4
    assert received[-1] - received[0] < 1.0  # all four were at Maskinporten at once


def test_hints_are_wrapped_to_a_terminal_width() -> None:
    outcomes = [Outcome(Customer(f"line {n}", invalid=f"customers.txt:{n}: not a customer")) for n in (1, 2)]
    lines = _hints(outcomes, width=50)
    assert lines[:2] == ["", "INVALID (2 customers)"]
    assert lines[2].startswith("  hint: fix the line") and all(line.startswith(" " * 8) for line in lines[3:])
    assert len(lines) > 3 and all(len(line) <= 50 for line in lines)
    assert " ".join(line.strip() for line in lines[2:]).removeprefix("hint: ") == _INVALID_HINT
