"""``maskinporten check``: whether Maskinporten gives a token for each of many customers, all checked at once.

The customers are views of one auth family (:meth:`~maskinporten_auth.MaskinportenAuth.with_consumer_org`,
:meth:`~maskinporten_auth.MaskinportenAuth.with_systemuser`), checked concurrently with
:meth:`~maskinporten_auth.MaskinportenAuth.acheck`; the family's in-flight limit bounds the requests at
Maskinporten. No token is ever printed.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import textwrap
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ..auth import MaskinportenAuth, Readiness
from ..config import CLIENT_ID, ENV, KEY, KID, RESOURCE, SCOPES
from ..errors import ConfigurationError, MaskinportenError, SigningError, TokenRequestError
from ..grant import validate_external_ref
from ..orgnr import validate_orgno
from ..provider import DEFAULT_MAX_IN_FLIGHT
from ._common import (
    CliError,
    ConfigSource,
    ExitCode,
    add_config_arguments,
    exit_code_for,
    print_json,
    table_lines,
)

__all__ = ["Customer", "Outcome", "check_all", "configure_check"]

Kind = Literal["consumer_org", "systemuser"]

#: The kinds as the table names them.
_KIND_LABELS: dict[Kind, str] = {"consumer_org": "delegation", "systemuser": "system user"}
#: What the table's status column says for a failure that is not Maskinporten's answer, by exit status.
_FAILURE_LABELS = {ExitCode.UNAVAILABLE: "UNAVAILABLE", ExitCode.SIGNING: "SIGNING-FAILED"}
#: The JSON ``status`` of each exit status.
_STATUSES = {
    ExitCode.OK: "ready",
    ExitCode.REFUSED: "refused",
    ExitCode.USAGE: "invalid",
    ExitCode.UNAVAILABLE: "unavailable",
    ExitCode.SIGNING: "signing_failed",
}
_UNAVAILABLE_HINT = "Maskinporten could not be reached or failed after retries: try again; `maskinporten doctor` helps"
_MIN_DETAILS = 30
_SIGNING_HINT = "the key backend failed: check its address, credentials and permissions; `maskinporten doctor` helps"
_INVALID_HINT = "fix the line: ORGNR for a delegation, or systemuser:ORGNR[:EXTERNAL_REF]; it was not checked"

_EPILOG = f"""\
A customer is a consumer_org (Altinn delegation), given as ORGNR, or a system user (Altinn 3 systembruker),
given as ORGNR or ORGNR:EXTERNAL_REF. A customers file has one customer a line: ORGNR for a delegation, or
systemuser:ORGNR[:EXTERNAL_REF]; blank lines and lines starting with # are skipped; "-" reads standard input;
a line that is not a customer is reported as INVALID and the others are checked. All customers are checked at
once, as views of one auth family, with at most {DEFAULT_MAX_IN_FLIGHT} token requests in flight. The client,
scopes and key come from the MASKINPORTEN_* variables or the configuration options (MASKINPORTEN_CONSUMER_ORG is
not read).

  maskinporten check --consumer-org 310539759 311654306 --systemuser 313990265:payroll-1
  maskinporten check --customers-file customers.txt --json | jq '.customers[] | select(.ready | not)'

The table has one line per customer; each refusal's hint is printed once per code, beneath it. The exit status is
0 when every customer is ready, 1 when any was refused, 2 when a line of a customers file is not a customer, 3 when
Maskinporten could not be reached for one, and 4 when the key backend failed (the highest applies). No token is
printed.
"""


@dataclass(frozen=True)
class Customer:
    """A customer to check: an organisation number, how the supplier acts for it, and a system user's reference.

    ``invalid`` says why a customers-file line is not a customer (``orgno`` then holds the line's text): such a
    customer is reported, not checked.
    """

    orgno: str
    kind: Kind = "consumer_org"
    external_ref: str | None = None
    invalid: str | None = None

    def view(self, auth: MaskinportenAuth) -> MaskinportenAuth:
        """The view of ``auth``'s family that acts for this customer."""
        if self.kind == "systemuser":
            return auth.with_systemuser(self.orgno, self.external_ref)
        return auth.with_consumer_org(self.orgno)

    def __str__(self) -> str:
        return self.orgno if self.external_ref is None else f"{self.orgno}:{self.external_ref}"


@dataclass(frozen=True)
class Outcome:
    """A customer's readiness, or the failure (network, key backend) that kept it from being known."""

    customer: Customer
    readiness: Readiness | None = None
    failure: MaskinportenError | None = None

    @property
    def exit_code(self) -> ExitCode:
        """OK when ready, REFUSED when refused, USAGE for an invalid customer, else the failure's exit status."""
        if self.customer.invalid is not None:
            return ExitCode.USAGE
        if self.readiness is not None:
            return ExitCode.OK if self.readiness else ExitCode.REFUSED
        assert self.failure is not None
        return exit_code_for(self.failure)

    @property
    def label(self) -> str:
        """The table's status column: READY, the MP code (or OAuth error) of a refusal, or the kind of failure."""
        code = self.exit_code
        if code is ExitCode.OK:
            return "READY"
        if self.readiness is not None:
            error = self.readiness.error
            return self.readiness.code or (error.error if error is not None else None) or "REFUSED"
        return _FAILURE_LABELS.get(code, "INVALID" if code is ExitCode.USAGE else "ERROR")

    def details(self) -> tuple[str | None, str | None]:
        """Maskinporten's description and the hint; for a failure, its message and what to look at."""
        if self.customer.invalid is not None:
            return self.customer.invalid, _INVALID_HINT
        if self.readiness is not None:
            return self.readiness.description, self.readiness.hint
        error = self.failure
        if isinstance(error, SigningError):
            return str(error).removesuffix(f" (hint: {error.hint})"), error.hint or _SIGNING_HINT
        if isinstance(error, TokenRequestError):
            return str(error).removesuffix(f" Hint: {error.hint}"), error.hint or _UNAVAILABLE_HINT
        return str(error), None

    def as_json(self) -> dict[str, Any]:
        """The outcome as a JSON object (see ``docs/cli.md``)."""
        description, hint = self.details()
        readiness = self.readiness
        error = readiness.error if readiness is not None else self.failure
        return {
            "customer": self.customer.orgno,
            "kind": self.customer.kind,
            "external_ref": self.customer.external_ref,
            "ready": self.exit_code is ExitCode.OK,
            "status": _STATUSES.get(self.exit_code, "error"),
            "code": None if readiness is None else readiness.code,
            "error": error.error if isinstance(error, TokenRequestError) else None,
            "description": description,
            "hint": hint,
        }


def configure_check(parser: argparse.ArgumentParser) -> None:
    """Describe ``check`` and add its arguments."""
    parser.description = (
        "Check at once whether Maskinporten gives a token for each of many customers (Altinn delegations and "
        "system users), and print a table: READY, or the MP code, Maskinporten's description and a hint."
    )
    parser.epilog = _EPILOG
    group = parser.add_argument_group("customers", "At least one customer; the options can be combined and repeated.")
    group.add_argument(
        "--consumer-org",
        dest="consumer_orgs",
        metavar="ORGNR",
        nargs="+",
        action="extend",
        default=[],
        help="customers that delegated the scopes to you in Altinn",
    )
    group.add_argument(
        "--systemuser",
        dest="systemusers",
        metavar="ORGNR[:REF]",
        nargs="+",
        action="extend",
        default=[],
        help="customers whose Altinn system user you act as; REF is the system user's externalRef, if any",
    )
    group.add_argument(
        "--customers-file",
        metavar="PATH",
        action="append",
        default=[],
        help='a file of customers, one a line: ORGNR or systemuser:ORGNR[:REF] ("-": standard input)',
    )
    parser.add_argument("--json", action="store_true", help="print the outcomes as JSON")
    add_config_arguments(parser, ENV, CLIENT_ID, SCOPES, KEY, KID, RESOURCE)
    parser.set_defaults(func=check)


def _orgno(value: str, where: str) -> str:
    """A valid organisation number, or a usage error that names ``where`` and the value."""
    try:
        return validate_orgno(value, where)
    except ConfigurationError as exc:
        raise CliError(str(exc)) from None


def parse_systemuser(value: str, where: str = "--systemuser") -> Customer:
    """Parse ``ORGNR[:EXTERNAL_REF]`` into a system-user customer; a usage error names ``where`` and the value."""
    if value.startswith("0192:"):  # let the organisation number's check say what is wrong
        return Customer(_orgno(value, where), "systemuser")
    orgno, separator, external_ref = value.partition(":")
    if not separator:
        return Customer(_orgno(orgno, where), "systemuser")
    try:
        validate_external_ref(external_ref, f"{where} (the externalRef after ':' in {value!r})")
    except ConfigurationError as exc:
        raise CliError(str(exc)) from None
    return Customer(_orgno(orgno, where), "systemuser", external_ref)


def parse_customer_line(line: str, where: str) -> Customer | None:
    """Parse a customers-file line: ``ORGNR`` or ``systemuser:ORGNR[:REF]``; None for a blank or comment line."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    prefix, separator, rest = text.partition(":")
    if separator and prefix.strip().lower() == "systemuser":
        return parse_systemuser(rest.strip(), where)
    return Customer(_orgno(text, where))


def _read_lines(path: str) -> list[str]:
    if path == "-":
        return sys.stdin.read().splitlines()
    try:
        with open(path, encoding="utf-8-sig") as file:
            return file.read().splitlines()
    except OSError as exc:
        raise CliError(f"--customers-file: cannot read {path!r}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise CliError(f"--customers-file: {path!r} is not UTF-8 text") from None


def _customers_from_file(path: str) -> Iterator[Customer]:
    """The file's customers; a line that is not one becomes an invalid customer, so that the rest are checked."""
    name = "<stdin>" if path == "-" else path
    for number, line in enumerate(_read_lines(path), start=1):
        try:
            customer = parse_customer_line(line, f"{name}:{number}")
        except CliError as exc:
            kind: Kind = "systemuser" if line.strip().lower().startswith("systemuser:") else "consumer_org"
            customer = Customer(line.strip(), kind, invalid=str(exc))
        if customer is not None:
            yield customer


def customers_of(args: argparse.Namespace) -> list[Customer]:
    """Every customer the options name, in order, each once; a usage error if there are none."""
    customers: list[Customer] = [Customer(_orgno(value, "--consumer-org")) for value in args.consumer_orgs]
    customers += [parse_systemuser(value) for value in args.systemusers]
    for path in args.customers_file:
        customers += _customers_from_file(path)
    if not customers:
        raise CliError("name at least one customer: --consumer-org, --systemuser or --customers-file")
    return list(dict.fromkeys(customers))


async def _check_one(auth: MaskinportenAuth, customer: Customer) -> Outcome:
    try:
        return Outcome(customer, readiness=await customer.view(auth).acheck())
    except MaskinportenError as exc:  # no answer about this customer: the network, Maskinporten or the key
        return Outcome(customer, failure=exc)


async def check_all(auth: MaskinportenAuth, customers: Iterable[Customer]) -> list[Outcome]:
    """Check every valid customer concurrently as views of ``auth``'s family, then close the family.

    An invalid customer's outcome says so, without a request.
    """

    async def outcome(customer: Customer) -> Outcome:
        return Outcome(customer) if customer.invalid is not None else await _check_one(auth, customer)

    async with auth:
        return list(await asyncio.gather(*(outcome(customer) for customer in customers)))


def _table(outcomes: Sequence[Outcome]) -> list[str]:
    """The outcomes as a text table, one line per customer: customer, kind, status and the description."""
    rows = [("CUSTOMER", "KIND", "STATUS", "DETAILS")] + [
        (str(outcome.customer), _KIND_LABELS[outcome.customer.kind], outcome.label, outcome.details()[0] or "")
        for outcome in outcomes
    ]
    return table_lines(rows)


def _hints(outcomes: Sequence[Outcome], width: int | None = None) -> list[str]:
    """Each distinct hint once, under the status it is for and how many customers have it.

    With ``width`` (a terminal's), the hints are wrapped to fit in that many columns.
    """
    customers: dict[tuple[str, str], int] = {}
    for outcome in outcomes:
        hint = outcome.details()[1]
        if hint:
            customers[outcome.label, hint] = customers.get((outcome.label, hint), 0) + 1
    wrap = textwrap.TextWrapper(
        width=max(_MIN_DETAILS, width) if width else sys.maxsize,
        initial_indent="  hint: ",
        subsequent_indent="        ",
        break_on_hyphens=False,
    )
    lines = []
    for (label, hint), count in customers.items():
        lines += ["", f"{label} ({count} customer{'s' if count > 1 else ''})", *wrap.wrap(hint)]
    return lines


def _summary(outcomes: Sequence[Outcome]) -> dict[str, int]:
    counts = {"customers": len(outcomes), "ready": 0, "refused": 0, "failed": 0, "invalid": 0}
    kinds = {ExitCode.OK: "ready", ExitCode.REFUSED: "refused", ExitCode.USAGE: "invalid"}
    for outcome in outcomes:
        counts[kinds.get(outcome.exit_code, "failed")] += 1
    return counts


def check(args: argparse.Namespace) -> ExitCode:
    """Check every customer and print the outcomes; the exit status is the most serious outcome's."""
    customers = customers_of(args)
    source = ConfigSource(args)
    signer = source.signer()
    with source.blame_options():
        auth = MaskinportenAuth.from_config(source.config, signer=signer, consumer_org=None)
    outcomes = asyncio.run(check_all(auth, customers))
    summary = _summary(outcomes)
    if args.json:
        print_json(
            {
                "ready": summary["ready"] == len(outcomes),
                "summary": summary,
                "customers": [outcome.as_json() for outcome in outcomes],
            }
        )
    else:
        width = shutil.get_terminal_size().columns if sys.stdout.isatty() else None
        print("\n".join(_table(outcomes) + _hints(outcomes, width)))
        invalid = f", {summary['invalid']} invalid" if summary["invalid"] else ""
        print(
            f"\n{summary['ready']} of {len(outcomes)} ready, {summary['refused']} refused, "
            f"{summary['failed']} failed{invalid}"
        )
    return max((outcome.exit_code for outcome in outcomes), default=ExitCode.OK)
