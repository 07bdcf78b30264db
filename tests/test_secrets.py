"""No secret — private key, grant, access token — in a log line, a repr or an exception message.

Full flows run with DEBUG logging on for the ``maskinporten_auth`` logger and the root logger (so httpx, httpcore,
requests and the emulator log too). Afterwards every log record (message, arguments and traceback), the reprs of
the objects involved and every exception (str, repr, args and the formatted chain) are searched for:

- the private key: its PEM text line by line, the base64 body, and the JWK members d, p, q, dp, dq, qi;
- every grant the signer made (in full, and its claims and signature segments);
- every access token the token endpoint handed out (read from the wire by an httpx response hook).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import traceback
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from email.message import Message

import httpx
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from maskinporten_auth import (
    Environment,
    LocalKeySigner,
    MaskinportenAuth,
    MaskinportenError,
    RefreshPolicy,
    RetryPolicy,
    SigningError,
    TokenEvent,
    TokenRequestError,
)
from maskinporten_auth.endpoints import parse_token_response
from maskinporten_auth.jwk import b64url
from maskinporten_auth.testing import Fault, MaskinportenEmulator
from maskinporten_auth.testing.protected_api import ProtectedApi
from maskinporten_auth.testing.wire import observed_client

from .conftest import answering

SCOPE = "nav:oppfolgingsplan/lps.write"
CUSTOMER_WITHOUT_DELEGATION = "310539759"


@dataclass
class Evidence:
    """Everything a secret could leak into, and the secrets to look for."""

    texts: list[str] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)

    def expect_error(self, call: Callable[[], object]) -> None:
        """Run ``call``, which must fail with a typed error, and keep the error."""
        with pytest.raises(MaskinportenError) as raised:
            call()
        self.errors.append(raised.value)

    def error_texts(self) -> Iterator[str]:
        for error in self.errors:
            yield str(error)
            yield repr(error)
            yield from map(repr, error.args)
            yield "".join(traceback.format_exception(error))


def key_secrets(signer_key: rsa.RSAPrivateKey) -> list[str]:
    secrets: list[str] = []
    for private_format in (serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL):
        pem = signer_key.private_bytes(serialization.Encoding.PEM, private_format, serialization.NoEncryption())
        body = [line for line in pem.decode("ascii").splitlines() if not line.startswith("-----")]
        secrets += [line for line in body if len(line) >= 32]
        secrets.append("".join(body))
    numbers = signer_key.private_numbers()
    for value in (numbers.d, numbers.p, numbers.q, numbers.dmp1, numbers.dmq1, numbers.iqmp):
        secrets += [b64url(value.to_bytes((value.bit_length() + 7) // 8, "big")), str(value), f"{value:x}"]
    return secrets


def grant_secrets(grants: Iterable[str]) -> list[str]:
    secrets: list[str] = []
    for grant in grants:
        _, claims, signature = grant.split(".")
        secrets += [grant, claims, signature]
    return secrets


def leaks(texts: Iterable[str], secrets: Iterable[str]) -> list[tuple[str, str]]:
    """(secret, the text it was found in) for every secret found in a text."""
    secrets = [secret for secret in secrets if secret]
    return [(secret[:16] + "...", text[:200]) for text in texts for secret in secrets if secret in text]


def log_texts(records: Iterable[logging.LogRecord]) -> Iterator[str]:
    formatter = logging.Formatter("%(levelname)s %(name)s %(message)s")
    for record in records:
        yield formatter.format(record)
        yield repr(record.args)
        if record.exc_info and record.exc_info[1] is not None:
            yield "".join(traceback.format_exception(record.exc_info[1]))


@pytest.fixture
def api(maskinporten_emulator) -> Iterator[ProtectedApi]:
    with ProtectedApi(lambda: maskinporten_emulator.jwks, issuer=maskinporten_emulator.issuer, scope=SCOPE) as api:
        yield api


@pytest.fixture
def evidence() -> Evidence:
    return Evidence()


@pytest.fixture
def wire_client(evidence) -> Iterator[httpx.Client]:
    """An HTTP client for the token endpoint that notes every access token coming back from it."""

    def note(response: httpx.Response) -> None:
        try:
            token = parse_token_response(response).access_token
        except MaskinportenError:
            return
        evidence.tokens.append(token)

    with observed_client(note) as client:
        yield client


class BrokenHsmSigner(LocalKeySigner):
    """A local key whose signing fails, as a remote key service's can."""

    def sign(self, signing_input: bytes) -> bytes:
        raise SigningError("the key service is unavailable", backend="local", key=self.kid, hint="try again later")


@dataclass
class Flow:
    """What a flow works with; ``shown`` collects the objects whose reprs are scanned."""

    emulator: MaskinportenEmulator
    api: ProtectedApi
    signer: LocalKeySigner
    signer_key: rsa.RSAPrivateKey
    evidence: Evidence
    make: Callable[..., MaskinportenAuth]
    shown: list[object] = field(default_factory=list)

    def auth(self, **options) -> MaskinportenAuth:
        auth = self.make(**options)
        self.shown += [auth, auth.signer, auth.cache, auth._provider, auth._endpoint, auth._grants]
        return auth


def success_and_401_refresh_in_every_client(flow: Flow) -> None:
    auth, api = flow.auth(remember_refusals=0), flow.api  # each client's renewal is rejected in turn
    with httpx.Client(auth=auth) as client:
        assert client.get(f"{api.url}/a").status_code == 200
        api.revoke(auth.get_token())
        assert client.post(f"{api.url}/b", content=b"x").status_code == 201

    async def async_calls() -> None:
        async with httpx.AsyncClient(auth=auth) as client:
            api.revoke(await auth.aget_token())
            assert (await client.get(f"{api.url}/c")).status_code == 200

    asyncio.run(async_calls())
    api.revoke(auth.get_token())
    assert requests.get(f"{api.url}/d", auth=auth, timeout=10).status_code == 200
    flow.shown.append(auth.cache.get(auth.cache_key))


def retries_to_success_and_retries_that_run_out(flow: Flow) -> None:
    for fault in (Fault.server_error(502), Fault.reset_connection(), Fault.malformed_json(), Fault.html_error_page()):
        flow.emulator.inject_fault(fault)
    assert flow.auth(retry=RetryPolicy(attempts=5, backoff=0.01)).get_token()
    flow.emulator.inject_fault(Fault.invalid_expires_in("soon"), times=2)
    flow.evidence.expect_error(flow.auth(retry=RetryPolicy(attempts=2, backoff=0.01)).get_token)


def maskinporten_refusals(flow: Flow) -> None:
    flow.evidence.expect_error(flow.auth(signer=type(flow.signer)(flow.signer_key, kid="not-registered")).get_token)
    flow.evidence.expect_error(flow.auth(scopes="nav:not-registered").get_token)
    flow.evidence.expect_error(flow.auth(consumer_org=CUSTOMER_WITHOUT_DELEGATION).get_token)


def a_failed_early_refresh_and_a_clock_correction(flow: Flow) -> None:
    flow.emulator.token_lifetime = 30
    auth = flow.auth(refresh=RefreshPolicy(refresh_window=(0.01, 0.01)), retry=RetryPolicy(attempts=1))
    token = auth.get_token()
    flow.emulator.inject_fault(Fault.server_error(500))
    time.sleep(0.35)  # past the refresh point (0.3 s)
    assert auth.get_token() == token  # the refresh failed: logged with its error, the valid token kept
    assert flow.emulator.grants[-1].status == 500
    flow.emulator.clock_offset = 60
    assert flow.auth().get_token()
    assert [record.code for record in flow.emulator.grants[-2:]] == ["MP-130", None]


def signing_errors(flow: Flow) -> None:
    broken = flow.auth(signer=BrokenHsmSigner(flow.signer_key, kid="test-key-1"))
    flow.evidence.expect_error(broken.get_token)
    flow.evidence.expect_error(lambda: asyncio.run(broken.aget_token()))


FLOWS = [
    success_and_401_refresh_in_every_client,
    retries_to_success_and_retries_that_run_out,
    maskinporten_refusals,
    a_failed_early_refresh_and_a_clock_correction,
    signing_errors,
]


@pytest.mark.parametrize("run", FLOWS, ids=[run.__name__ for run in FLOWS])
def test_no_secret_in_logs_reprs_or_errors(
    run, maskinporten_emulator, api, recording_signer, rsa_key, registered_client, wire_client, evidence, caplog
):
    events: list[TokenEvent] = []

    def metrics_backend_that_is_down(event: TokenEvent) -> None:
        events.append(event)
        raise RuntimeError("metrics backend down")  # logged by the library with its traceback

    def make(**options) -> MaskinportenAuth:
        settings = {
            "client_id": registered_client,
            "scopes": SCOPE,
            "signer": recording_signer,
            "environment": maskinporten_emulator.environment,
            "http_client": wire_client,
            "on_event": metrics_backend_that_is_down,
            **options,
        }
        return MaskinportenAuth(**settings)

    flow = Flow(maskinporten_emulator, api, recording_signer, rsa_key, evidence, make)
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="maskinporten_auth")
    run(flow)

    evidence.tokens += [call.token for call in api.calls if call.token]
    secrets = [*key_secrets(rsa_key), *grant_secrets(recording_signer.grants), *evidence.tokens]
    texts = [
        *log_texts(caplog.records),
        *map(repr, flow.shown),
        *map(repr, events),
        *evidence.error_texts(),
    ]
    logged = {record.name.split(".")[0] for record in caplog.records}
    assert "maskinporten_auth" in logged
    if run is not signing_errors:  # the flow posted grants: the HTTP stack logged at DEBUG too
        assert recording_signer.grants
        assert {"httpx", "httpcore"} <= logged
    assert leaks(texts, secrets) == []


def test_the_scan_finds_a_secret_when_there_is_one(rsa_key):
    """The scanner itself can fail: each kind of secret is found where it is planted."""
    grant = "eyJhbGciOiJSUzI1NiJ9.eyJqdGkiOiIxIn0.c2lnbmF0dXJlLXNlZ21lbnQtb2YtdGhlLWdyYW50"
    pem = rsa_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")
    planted = [f"key: {pem.splitlines()[5]}", f"claims {grant.split('.')[1]}", "bearer the-access-token-value"]
    secrets = [*key_secrets(rsa_key), *grant_secrets([grant]), "the-access-token-value"]
    assert len(leaks(planted, secrets)) == 3
    assert leaks(["nothing to see"], secrets) == []


def _quote_the_grant(headers: Message, content: bytes) -> bytes:
    """A token endpoint's refusal that quotes the grant it was sent, whole and in parts, over several lines."""
    grant = urllib.parse.parse_qs(content.decode())["assertion"][0]
    said = f"bad assertion {grant}\nINFO forged log line, claims {grant.split('.')[1]}"
    return json.dumps({"error": "invalid_grant\nINFO forged", "error_description": said}).encode()


def test_a_token_endpoint_that_quotes_the_grant_never_gets_it_into_an_error_or_a_log(recording_signer, caplog):
    caplog.set_level(logging.DEBUG, logger="maskinporten_auth")
    with answering(400, _quote_the_grant) as url:
        environment = Environment(issuer=f"{url}/", token_endpoint=f"{url}/token")
        with (
            MaskinportenAuth("quoted", SCOPE, recording_signer, environment) as auth,
            pytest.raises(TokenRequestError) as refused,
        ):
            auth.get_token()

    error = refused.value
    assert recording_signer.grants
    assert error.description is not None and "\n" not in error.description and "\n" not in str(error)
    assert error.description.startswith("bad assertion <token> INFO forged log line, claims <token>")
    texts = [str(error), repr(error), error.description, *log_texts(caplog.records)]
    assert leaks(texts, grant_secrets(recording_signer.grants)) == []
