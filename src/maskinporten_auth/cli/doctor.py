"""``maskinporten doctor``: check a configuration step by step, and say what to fix."""

from __future__ import annotations

import argparse
import datetime
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

import httpx

from ..auth import MaskinportenAuth
from ..certificates import CertificateChain, organisation_number
from ..config import ENV, KID
from ..endpoints import GrantClock
from ..environment import Environment
from ..errors import ConfigurationError, NetworkError, SigningError, TokenRequestError
from ..jwk import jwk_thumbprint
from ..jws import CompactJws, MalformedJws
from ..orgnr import is_valid_orgno
from ..signer import Signer
from ._common import ConfigSource, ExitCode, add_config_arguments, exit_code_for
from .checklists import checklist_for

if TYPE_CHECKING:
    from ..selfservice import SelfService

__all__ = ["configure_doctor"]

T = TypeVar("T")

#: A certificate that expires sooner than this is reported.
EXPIRY_WARNING = datetime.timedelta(days=30)
#: Clock offsets (seconds) worth a warning, and beyond Maskinporten's tolerance for ``iat``.
CLOCK_WARNING = 2.0
CLOCK_LIMIT = 10.0
_PROBE = b"maskinporten doctor: signing probe"

_EPILOG = """\
Checks, in order: the environment, client id, scopes and consumer_org; that the key is readable and has a kid or a
certificate (x5c); that the certificate is valid for at least 30 more days and names a valid organisation number;
that the key signs; the clock's offset against the token endpoint's Date header; a shared token cache
(MASKINPORTEN_CACHE_URL), if one is configured, with a probe entry written, read back and removed; a real token
request; then, through Digdir's self-service API (test and prod, or MASKINPORTEN_SELFSERVICE_URL), the days left on
the registered signing key (when the integration has idporten:dcr.read) and each scope's catalogue entry: its token
lifetime, whether it can be delegated (consumer_org), and whether it is active for Maskinporten integrations.
A refused request is explained with a checklist of causes and fixes for its MP code.

The exit status is that of the first failure: 1 refused or a problem found, 2 configuration, 3 network, 4 key
backend. Warnings alone give 0.
"""


def configure_doctor(parser: argparse.ArgumentParser) -> None:
    """Describe ``doctor`` and add its arguments."""
    parser.description = "Check a Maskinporten configuration step by step, ending with a real token request."
    parser.epilog = _EPILOG
    add_config_arguments(parser)
    parser.set_defaults(func=doctor)


class Report:
    """Prints each step's outcome and remembers the first failure's exit status."""

    def __init__(self, describe: Callable[[ConfigurationError], str]) -> None:
        self.failure: ExitCode | None = None
        self._describe = describe

    def _line(self, mark: str, step: str, detail: str, notes: Sequence[str] = ()) -> None:
        print(f"[{mark}] {step}: {detail}", flush=True)
        for note in notes:
            print(f"       - {note}", flush=True)

    def ok(self, step: str, detail: str) -> None:
        """Report a passed check."""
        self._line(" ok ", step, detail)

    def warn(self, step: str, detail: str) -> None:
        """Report a concern that does not stop tokens from working."""
        self._line("warn", step, detail)

    def skip(self, step: str, detail: str) -> None:
        """Report a check that could not run or does not apply."""
        self._line("skip", step, detail)

    def fail(self, step: str, detail: str, code: ExitCode, notes: Sequence[str] = ()) -> None:
        """Report a failed check with what to look at."""
        self._line("FAIL", step, detail, notes)
        if self.failure is None:
            self.failure = code

    def attempt(self, step: str, read: Callable[[], T], describe: Callable[[T], str]) -> T | None:
        """Run ``read``; report its value as ok, or its configuration or signing error as a failure."""
        try:
            value = read()
        except ConfigurationError as exc:
            self.fail(step, self._describe(exc), exit_code_for(exc))
            return None
        except NetworkError as exc:  # the issuer's metadata could not be read
            self.fail(step, str(exc), exit_code_for(exc))
            return None
        except SigningError as exc:
            self.fail(step, str(exc), ExitCode.SIGNING)
            return None
        self.ok(step, describe(value))
        return value


def _describe_environment(environment: Environment, unset: str | None = None) -> str:
    """The environment in use; ``unset`` names the variable that was not set when it is the default."""
    where = f"issuer {environment.issuer}, token endpoint {environment.token_endpoint}"
    if environment.name is None:
        return f"custom ({where}, discovered from {environment.metadata_url})"
    default = f"; the default, as {unset} is not set" if unset is not None else ""
    return f"{environment.name} ({where}{default})"


def _describe_consumer_org(consumer_org: str | None) -> str:
    return consumer_org or "not set: tokens are for your own organisation"


def _describe_resource(resource: str | None) -> str:
    return resource or "not set: tokens without audience restriction"


def _describe_signer(signer: Signer) -> str:
    return f"{type(signer).__name__}, RSA {signer.public_key().key_size} bits, {signer.algorithm}"


def check_key_identity(report: Report, source: ConfigSource, signer: Signer) -> None:
    """A grant needs ``kid`` (a registered key) or ``x5c`` (an enterprise certificate)."""
    try:
        header = signer.jose_header()
    except ConfigurationError as exc:
        report.fail(
            "kid",
            source.describe(ConfigurationError(source.config.name(KID), exc.problem)),
            ExitCode.USAGE,
            [f"This key's thumbprint is {jwk_thumbprint(signer.public_key())}."],
        )
        return
    if "kid" in header:
        report.ok("kid", f"{signer.kid} (must match the key id on the integration)")
    else:
        report.ok("x5c", f"a chain of {len(header['x5c'])} certificate(s)")


def check_certificate(report: Report, signer: Signer, now: datetime.datetime) -> None:
    """An enterprise certificate must be valid, not about to expire, and name a valid organisation number."""
    chain = getattr(signer, "certificate_chain", None)
    if not isinstance(chain, CertificateChain):
        report.skip("certificate", "none (the key is registered by kid)")
        return
    expires = chain.expires()
    subject = chain.leaf.subject.rfc4514_string()
    if expires <= now:
        report.fail("certificate", f"{subject} expired on {expires:%Y-%m-%d}", ExitCode.USAGE)
    elif expires - now < EXPIRY_WARNING:
        report.warn("certificate", f"{subject} expires on {expires:%Y-%m-%d}, in {(expires - now).days} days: renew it")
    else:
        report.ok("certificate", f"{subject}, valid until {expires:%Y-%m-%d}")
    orgno = organisation_number(chain.leaf)
    if orgno is None:
        report.warn("orgnr", "the certificate's subject names no organisation number")
    elif is_valid_orgno(orgno):
        report.ok("orgnr", f"the certificate is issued to {orgno}")
    else:
        report.fail("orgnr", f"the certificate names {orgno}, which fails the mod-11 check", ExitCode.USAGE)


def check_signing(report: Report, signer: Signer) -> bool:
    """Sign a probe and verify it with the public key: catches missing permissions and mismatched keys."""
    started = time.perf_counter()
    try:
        signature = signer.sign(_PROBE)
    except SigningError as exc:
        report.fail("signing", str(exc), ExitCode.SIGNING)
        return False
    elapsed = (time.perf_counter() - started) * 1000
    probe = CompactJws(header={}, claims={}, signing_input=_PROBE, signature=signature)
    if not probe.signature_is_valid(signer.public_key(), signer.algorithm):
        report.fail("signing", "the signature does not verify with the key's own public key", ExitCode.SIGNING)
        return False
    report.ok("signing", f"signed and verified a probe in {elapsed:.0f} ms")
    return True


def check_clock(report: Report, environment: Environment) -> bool:
    """Compare the local clock with the token endpoint's ``Date`` header; False if Maskinporten is unreachable."""
    clock = GrantClock()
    sent_at = time.time()
    assert environment.token_endpoint is not None  # discovered by the environment step
    try:
        response = httpx.get(environment.token_endpoint, timeout=10.0)
    except httpx.HTTPError as exc:
        report.fail("clock", f"cannot reach {environment.token_endpoint}: {exc}", ExitCode.UNAVAILABLE)
        return False
    clock.observe(response.headers.get("Date"), sent_at, time.time())
    offset = clock.estimated_offset
    if offset is None:
        report.warn("clock", "the token endpoint sent no Date header to compare with")
    elif abs(offset) > CLOCK_LIMIT:
        report.fail(
            "clock",
            f"this machine is {-offset:+.1f} s off Maskinporten's clock (the limit is {CLOCK_LIMIT:.0f} s)",
            ExitCode.REFUSED,
            ["Synchronise the clock with NTP; in a container, the host's clock."],
        )
    elif abs(offset) > CLOCK_WARNING:
        report.warn("clock", f"this machine is {-offset:+.1f} s off Maskinporten's clock; consider NTP")
    else:
        report.ok("clock", f"within {CLOCK_WARNING:.0f} s of Maskinporten's (Date header, 1 s resolution)")
    return True


def _describe_token(access_token: str, expires_in: float | None) -> str:
    parts = [f"got a token, valid for {expires_in:.0f} s" if expires_in is not None else "got a token"]
    try:
        claims = CompactJws.parse(access_token).claims
    except MalformedJws:
        return parts[0]
    for claim in ("scope", "consumer", "supplier"):
        value = claims.get(claim)
        if isinstance(value, dict):
            value = value.get("ID") or value.get("id")
        if value:
            parts.append(f"{claim} {value}")
    return ", ".join(parts)


def check_shared_cache(report: Report, source: ConfigSource) -> None:
    """With a shared token store configured (``CACHE_URL``), try it: a fleet whose store fails fetches per process."""
    try:
        store = source.config.cache()
    except ConfigurationError as exc:
        report.fail("shared cache", source.describe(exc), exit_code_for(exc))
        return
    if store is None:
        return
    try:
        detail = store.check()
    except Exception as exc:  # whatever the store's client raises: it is reported, not handled
        report.fail(
            "shared cache",
            f"{type(exc).__name__}: {exc}",
            ExitCode.UNAVAILABLE,
            notes=[
                "requests still get their tokens: while the store does not answer, every process fetches its own "
                "(one grant per customer per process instead of one per fleet)",
            ],
        )
    else:
        report.ok("shared cache", detail)
    finally:
        close = getattr(store, "close", None)
        if close is not None:
            close()


def check_token(report: Report, source: ConfigSource, signer: Signer) -> None:
    """Make a real token request, and explain a refusal."""
    expires: list[float] = []
    try:
        auth = MaskinportenAuth.from_config(
            source.config,
            signer=signer,
            on_event=lambda event: expires.extend([event.expires_in] if event.expires_in else []),
        )
    except ConfigurationError as exc:
        report.fail("token", source.describe(exc), ExitCode.USAGE)
        return
    try:
        access_token = auth.get_token()
    except (TokenRequestError, SigningError) as exc:
        notes = checklist_for(exc) if isinstance(exc, TokenRequestError) else ()
        report.fail("token", str(exc), exit_code_for(exc), notes)
        return
    finally:
        auth.close()
    report.ok("token", _describe_token(access_token, expires[0] if expires else None))


def check_selfservice(report: Report, source: ConfigSource, signer: Signer | None) -> None:
    """Days left on the registered signing key, and each scope's entry in Digdir's catalogue."""
    from ..selfservice import SelfServiceError
    from .selfservice import selfservice_base_url, selfservice_client

    try:
        base_url = selfservice_base_url(source)
    except ConfigurationError as exc:
        report.skip("key expiry", f"no self-service API known: {source.describe(exc)}")
        return
    if signer is not None:
        api = selfservice_client(source, base_url, signer)
        try:
            check_key_expiry(report, api, signer)
        except (SelfServiceError, TokenRequestError) as exc:
            report.skip("key expiry", f"cannot read the registered keys (needs idporten:dcr.read): {exc}")
        finally:
            api.close()
            if api.admin_auth is not None:
                api.admin_auth.close()
    catalogue = selfservice_client(source, base_url, None)
    try:
        for scope in source.config.scopes():
            check_scope_entry(report, catalogue, scope, source.config.consumer_org())
    except SelfServiceError as exc:
        report.skip("scope catalogue", str(exc))
    finally:
        catalogue.close()


def check_key_expiry(report: Report, api: SelfService, signer: Signer) -> None:
    """The registered key's days left: fail once expired (MP-121), warn within 30 days."""
    assert api.admin_auth is not None
    found = next((key for key in api.keys(api.admin_auth.client_id, signer=signer) if key.signing), None)
    if found is None:
        report.fail("key expiry", f"{signer.kid} is not registered on the integration", ExitCode.REFUSED)
        return
    days = found.days_left()
    if days is None:
        report.ok("key expiry", f"{found.kid} has no expiry")
    elif days <= 0:
        report.fail(
            "key expiry",
            f"{found.kid} expired on {found.expires_at:%Y-%m-%d} (MP-121)",
            ExitCode.REFUSED,
            [f"re-post it: maskinporten keys renew {found.kid}, or rotate: maskinporten keys rotate NEW_KEY"],
        )
    elif days * datetime.timedelta(days=1) < EXPIRY_WARNING:
        report.warn("key expiry", f"{found.kid} expires on {found.expires_at:%Y-%m-%d}, in {days:.0f} days: renew it")
    else:
        report.ok("key expiry", f"{found.kid} is valid until {found.expires_at:%Y-%m-%d} ({days:.0f} days)")


def check_scope_entry(report: Report, api: SelfService, name: str, consumer_org: str | None) -> None:
    """A scope's catalogue entry: lifetime and delegation; a warning for what makes Maskinporten refuse it."""
    from ..selfservice import SelfServiceError

    step = f"scope {name}"
    try:
        scope = api.scope(name)
    except SelfServiceError as exc:
        if exc.status is not None or exc.retryable:
            raise
        report.warn(step, "not in Digdir's scope catalogue: check the spelling")
        return
    delegation = f"delegable through {scope.delegation_source}" if scope.delegable else "not delegable"
    problems = scope.problems()
    if consumer_org is not None and not scope.delegable:
        problems.append(f"consumer_org is set, but {name} cannot be delegated: with_consumer_org cannot work for it")
    if problems:
        report.warn(step, "; ".join(problems))
    else:
        report.ok(step, f"tokens live {scope.token_lifetime} s, {delegation}")


def doctor(args: argparse.Namespace) -> ExitCode:
    """Run every check; the exit status is the first failure's."""
    source = ConfigSource(args)
    config = source.config
    report = Report(source.describe)
    unset = config.name(ENV) if config.get(ENV) is None else None
    environment = report.attempt(
        "environment", lambda: config.environment().resolved(), lambda env: _describe_environment(env, unset)
    )
    client_id = report.attempt("client id", config.client_id, str)
    scopes = report.attempt("scopes", config.scopes, " ".join)
    report.attempt("consumer_org", config.consumer_org, _describe_consumer_org)
    report.attempt("resource", config.resource, _describe_resource)
    signer = report.attempt("key", source.signer, _describe_signer)
    if signer is None:
        report.skip("signing", "no usable key")
    else:
        check_key_identity(report, source, signer)
        check_certificate(report, signer, datetime.datetime.now(datetime.timezone.utc))
        check_signing(report, signer)
    reachable = environment is not None and check_clock(report, environment)
    check_shared_cache(report, source)
    if report.failure is not None or not (reachable and client_id and scopes and signer):
        report.skip("token", "fix the failures above first")
    else:
        check_token(report, source, signer)
    if scopes:
        check_selfservice(report, source, signer if signer is not None and signer.certificate_chain is None else None)
    if report.failure is None:
        print("All checks passed.")
        return ExitCode.OK
    return report.failure
