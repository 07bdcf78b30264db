"""Trust in the 401 path: a token goes only to the origin it was added for, and a 401 never starts a storm.

Every test runs real HTTP: the emulator issues the tokens, small loopback servers play the API, the redirect and the
party at the other end of it, and each asserts what the other party saw and how many grants were signed.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
import logging
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from jose import jwt

from maskinporten_auth import (
    AltinnAuth,
    AltinnExchangeError,
    InvalidResponseError,
    MaskinportenAuth,
    RetryPolicy,
    ServerError,
)
from maskinporten_auth.testing import Fault, MaskinportenEmulator

from .conftest import SUPPLIER

CUSTOMER = "310539759"
INNTEKTSMELDING = "nav:inntektsmelding/lps.write"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # a burst of 250 callers connects at once


class Party:
    """A loopback HTTP(S) server that records each request's Authorization and answers by the Host it was sent to.

    ``answer(host)`` gives the status and, for a redirect, the Location: so one server can play an API at
    ``127.0.0.1`` and another party at ``localhost``.
    """

    def __init__(self, answer: Callable[[str], tuple[int, str | None]], tls: ssl.SSLContext | None = None) -> None:
        self.answer = answer
        self.tls = tls
        self.seen: list[tuple[str, str | None]] = []  # (host, Authorization)
        party = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                host = (self.headers.get("host") or "").rsplit(":", 1)[0]
                party.seen.append((host, self.headers.get("authorization")))
                status, location = party.answer(host)
                self.send_response(status)
                if location is not None:
                    self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = _Server(("127.0.0.1", 0), Handler)
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)

    def __enter__(self) -> Party:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def url(self, host: str = "127.0.0.1") -> str:
        return f"{'https' if self.tls else 'http'}://{host}:{self._server.server_address[1]}"

    def authorizations(self, host: str) -> list[str | None]:
        """The Authorization headers of the requests sent to ``host``."""
        return [authorization for seen_host, authorization in self.seen if seen_host == host]


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key, as files."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


def _server_tls(tls_files: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*map(str, tls_files))
    return context


@dataclass
class Redirect:
    """An API that redirects every request to a foreign origin, which answers 401 to everything."""

    api_url: str
    foreign: Party
    foreign_host: str
    ca_file: str | None

    @property
    def httpx_verify(self) -> ssl.SSLContext | bool:
        return True if self.ca_file is None else ssl.create_default_context(cafile=self.ca_file)

    @property
    def requests_verify(self) -> str | bool:
        return self.ca_file or True

    def foreign_authorizations(self) -> list[str | None]:
        return self.foreign.authorizations(self.foreign_host)


@pytest.fixture(params=["other-host-name", "other-port", "https-to-http"])
def redirect(request: pytest.FixtureRequest, tls_files: tuple[Path, Path]) -> Iterator[Redirect]:
    kind = request.param
    if kind == "other-host-name":
        # One server, two names: as 127.0.0.1 it is the API, as localhost another party on the same port.
        switch = Party(lambda host: (302, f"{switch.url('localhost')}/steal") if host == "127.0.0.1" else (401, None))
        with switch:
            yield Redirect(f"{switch.url()}/plan", switch, "localhost", None)
        return
    with Party(lambda host: (401, None)) as foreign:
        tls = _server_tls(tls_files) if kind == "https-to-http" else None
        with Party(lambda host: (302, f"{foreign.url()}/steal"), tls=tls) as api:
            yield Redirect(f"{api.url()}/plan", foreign, "127.0.0.1", str(tls_files[0]) if tls else None)


@pytest.fixture
def auth(make_auth: Callable[..., MaskinportenAuth]) -> MaskinportenAuth:
    return make_auth()


# A token goes only to the origin it was added for


@pytest.mark.parametrize("follow", [True, False], ids=["following", "not-following"])
def test_httpx_never_renews_or_resends_for_a_401_from_a_redirect_target(auth, redirect, maskinporten_emulator, follow):
    with httpx.Client(auth=auth, verify=redirect.httpx_verify, follow_redirects=follow) as client:
        response = client.post(redirect.api_url, content=b"plan")
    assert response.status_code == (401 if follow else 302)
    assert redirect.foreign_authorizations() == ([None] if follow else [])
    assert maskinporten_emulator.tokens_issued == 1


@pytest.mark.parametrize("follow", [True, False], ids=["following", "not-following"])
def test_httpx_async_never_renews_or_resends_for_a_401_from_a_redirect_target(
    auth, redirect, maskinporten_emulator, follow
):
    async def call() -> httpx.Response:
        async with httpx.AsyncClient(auth=auth, verify=redirect.httpx_verify, follow_redirects=follow) as client:
            return await client.post(redirect.api_url, content=b"plan")

    response = asyncio.run(call())
    assert response.status_code == (401 if follow else 302)
    assert redirect.foreign_authorizations() == ([None] if follow else [])
    assert maskinporten_emulator.tokens_issued == 1


@pytest.mark.parametrize("follow", [True, False], ids=["following", "not-following"])
def test_requests_never_sends_a_token_to_a_redirect_target_that_answers_401(
    auth, redirect, maskinporten_emulator, follow
):
    response = requests.post(
        redirect.api_url, data=b"plan", auth=auth, verify=redirect.requests_verify, allow_redirects=follow, timeout=10
    )
    assert response.status_code == (401 if follow else 302)
    assert redirect.foreign_authorizations() == ([None] if follow else [])
    assert maskinporten_emulator.tokens_issued == 1


def test_an_applications_own_requests_session_with_hooks_leaks_nothing(auth, redirect, maskinporten_emulator):
    seen: list[int] = []
    with requests.Session() as session:
        session.auth = auth
        session.hooks["response"].append(lambda response, **_: seen.append(response.status_code))
        response = session.get(redirect.api_url, verify=redirect.requests_verify, timeout=10)
    assert response.status_code == 401
    assert seen == [302, 401]
    assert redirect.foreign_authorizations() == [None]
    assert maskinporten_emulator.tokens_issued == 1


@pytest.mark.parametrize("client", ["httpx", "httpx-async", "requests"])
def test_an_altinn_auth_never_sends_its_token_to_a_redirect_target(
    altinn_auth, redirect, maskinporten_emulator, client
):
    status = _call(client, altinn_auth, redirect.api_url, ca_file=redirect.ca_file)
    assert status == 401
    assert redirect.foreign_authorizations() == [None]
    assert (maskinporten_emulator.tokens_issued, maskinporten_emulator.exchanges) == (1, 1)


# A 401 never starts a storm


@pytest.fixture
def always_401() -> Iterator[Party]:
    with Party(lambda host: (401, None)) as api:
        yield api


def _call(client: str, auth: httpx.Auth, url: str, *, ca_file: str | None = None) -> int:
    verify = True if ca_file is None else ssl.create_default_context(cafile=ca_file)
    if client == "httpx":
        with httpx.Client(auth=auth, verify=verify, follow_redirects=True) as http:
            return http.post(url, content=b"{}").status_code
    if client == "requests":
        return requests.post(url, data=b"{}", auth=auth, verify=ca_file or True, timeout=10).status_code  # type: ignore[arg-type]

    async def call() -> int:
        async with httpx.AsyncClient(auth=auth, verify=verify, follow_redirects=True) as http:
            return (await http.post(url, content=b"{}")).status_code

    return asyncio.run(call())


def _hammer(auth: httpx.Auth, url: str, *, threads: int, tasks: int) -> list[int]:
    """Send from ``threads`` threads (httpx and requests alternately) and ``tasks`` asyncio tasks at once."""
    statuses: list[int] = []
    start = threading.Barrier(threads + 1)

    def worker(index: int) -> None:
        start.wait()
        statuses.append(_call("requests" if index % 2 else "httpx", auth, url))

    async def many() -> list[int]:
        async with httpx.AsyncClient(auth=auth) as http:
            responses = await asyncio.gather(*(http.get(url) for _ in range(tasks)))
        return [response.status_code for response in responses]

    workers = [threading.Thread(target=worker, args=(index,)) for index in range(threads)]
    for thread in workers:
        thread.start()
    start.wait()
    statuses.extend(asyncio.run(many()))
    for thread in workers:
        thread.join(timeout=60)
    return statuses


def test_an_api_that_always_answers_401_costs_at_most_two_grants(
    auth, always_401, maskinporten_emulator, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.WARNING, logger="maskinporten_auth")
    statuses = _hammer(auth, always_401.url(), threads=50, tasks=200)
    statuses += [_call("httpx", auth, always_401.url()) for _ in range(20)]
    assert statuses == [401] * 270
    assert maskinporten_emulator.tokens_issued == 2
    warnings = [record for record in caplog.records if "renewed" in record.getMessage()]
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert "scope" in message and "resource" in message and "delegation" in message
    assert auth.get_token()  # the valid token stays cached: no new grant for it
    assert maskinporten_emulator.tokens_issued == 2


def test_each_view_pauses_its_own_renewal(auth, always_401, maskinporten_emulator, vendor_delegation):
    baker, grocer = auth.with_consumer_org(CUSTOMER), auth.with_consumer_org(vendor_delegation)
    for view in (baker, grocer, baker, grocer, baker):
        assert _call("httpx", view, always_401.url()) == 401
    assert maskinporten_emulator.tokens_issued == 4  # two per view, however many calls


def test_renewal_resumes_after_the_remember_refusals_window(make_auth, always_401, maskinporten_emulator):
    auth = make_auth(remember_refusals=0.5)
    for _ in range(3):
        assert _call("httpx", auth, always_401.url()) == 401
    assert maskinporten_emulator.tokens_issued == 2
    time.sleep(0.6)
    assert _call("requests", auth, always_401.url()) == 401
    assert maskinporten_emulator.tokens_issued == 3  # one renewal per window, and the renewal is rejected too


def test_a_token_revoked_at_the_api_still_recovers_in_one_resend(auth, maskinporten_emulator):
    rejected: list[str] = []

    def answer(host: str) -> tuple[int, str | None]:
        authorization = api.seen[-1][1] or ""
        if not rejected:
            rejected.append(authorization)
            return 401, None
        return (401 if authorization in rejected else 200), None

    with Party(answer) as api:
        for client in ("httpx", "httpx-async", "requests"):
            rejected.clear()
            auth.cache.clear()
            assert _call(client, auth, api.url()) == 200
    assert maskinporten_emulator.tokens_issued == 6  # per client: the token, then its renewal


def test_the_requests_hook_drops_the_rejected_token_not_the_one_cached_now(auth, maskinporten_emulator):
    sent = auth.get_token()
    prepared = requests.Request("GET", "http://127.0.0.1:9/x").prepare()
    auth(prepared)
    hook = prepared.hooks["response"][0]
    auth.cache.clear()
    fresh = auth.get_token()  # another caller renewed the token meanwhile
    assert fresh != sent
    late = requests.Response()
    late.status_code, late.request = 401, prepared
    late.raw = None
    resent: list[str] = []

    class Adapter:
        def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
            resent.append(request.headers["Authorization"])
            answer = requests.Response()
            answer.status_code, answer.request = 200, request
            return answer

    late.connection = Adapter()
    late._content = b""
    assert hook(late).status_code == 200
    assert resent == [f"Bearer {fresh}"]
    assert auth.get_token() == fresh
    assert maskinporten_emulator.tokens_issued == 2


# The Altinn exchange: the same rules


@pytest.fixture
def vendor_delegation(maskinporten_emulator: MaskinportenEmulator) -> str:
    grocer = "313990265"
    for customer in (CUSTOMER, grocer):
        maskinporten_emulator.delegate(customer, SUPPLIER, "nav:oppfolgingsplan/lps.write")
    return grocer


@pytest.fixture
def altinn_vendor(maskinporten_emulator: MaskinportenEmulator, rsa_key: rsa.RSAPrivateKey) -> str:
    client_id = "9c1b3c1e-6b56-4c8e-9a52-0e7c3d0f5a11"
    maskinporten_emulator.register_client(
        client_id, orgno=SUPPLIER, scopes=[INNTEKTSMELDING], keys={"test-key-1": rsa_key.public_key()}
    )
    maskinporten_emulator.add_systemuser(CUSTOMER, client_id, system_id=f"{SUPPLIER}_lonn")
    return client_id


@pytest.fixture
def altinn_auth(maskinporten_emulator: MaskinportenEmulator, altinn_vendor: str, signer: Any) -> AltinnAuth:
    auth = MaskinportenAuth(altinn_vendor, INNTEKTSMELDING, signer, environment=maskinporten_emulator.environment)
    return AltinnAuth(auth.with_systemuser(CUSTOMER), environment=maskinporten_emulator.url)


def test_an_always_401_api_behind_altinn_costs_at_most_two_exchanges_and_grants(
    altinn_auth, always_401, maskinporten_emulator
):
    statuses = _hammer(altinn_auth, always_401.url(), threads=50, tasks=200)
    statuses += [_call(client, altinn_auth, always_401.url()) for client in ("httpx", "requests") * 10]
    assert statuses == [401] * 270
    assert (maskinporten_emulator.tokens_issued, maskinporten_emulator.exchanges) == (2, 2)


def test_an_exchange_that_always_answers_401_costs_at_most_two_grants(altinn_auth, maskinporten_emulator):
    problem = {"title": "Unauthorized", "status": 401, "detail": "Invalid token"}
    maskinporten_emulator.inject_exchange_fault(Fault(status=401, body=problem), times=100)
    for _ in range(10):
        with pytest.raises(AltinnExchangeError) as raised:
            altinn_auth.get_token()
        assert raised.value.status == 401
    assert maskinporten_emulator.tokens_issued == 2


# An issuer's answer ends in a token or a typed error


@pytest.mark.parametrize("body", ["no-exp", "deeply-nested", "huge-exp"])
def test_a_hostile_exchange_answer_is_a_typed_error(altinn_auth, maskinporten_emulator, body):
    import base64

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")

    header = b64(b'{"alg":"HS256","typ":"JWT"}')
    if body == "deeply-nested":
        payload = b64(b'{"exp":' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    elif body == "huge-exp":
        payload = b64(json.dumps({"exp": int("9" * 400)}).encode())
    else:
        payload = b64(b"{}")
    maskinporten_emulator.inject_exchange_fault(Fault(status=200, body=f"{header}.{payload}.c2ln"), times=4)
    with pytest.raises(InvalidResponseError):
        altinn_auth.get_token()


def test_a_failing_refresh_never_hands_out_a_token_at_or_past_its_exp(make_auth, maskinporten_emulator):
    maskinporten_emulator.token_lifetime = 3
    auth = make_auth(retry=RetryPolicy(attempts=1, timeout=0.5, deadline=1.0))
    # Issue the token late in a second: its exp (whole seconds) is then almost a second before our estimate.
    while time.time() % 1 < 0.85:
        time.sleep(0.01)
    token = auth.get_token()
    expires = jwt.get_unverified_claims(token)["exp"]
    maskinporten_emulator.inject_fault(Fault.server_error(503), times=10_000)
    handed_out: list[float] = []
    deadline = time.time() + 6
    while time.time() < deadline:
        try:
            assert auth.get_token() == token
        except ServerError:
            break
        handed_out.append(time.time())
        time.sleep(0.02)
    else:
        pytest.fail("the failing refresh never failed a caller")
    assert handed_out, "the still-valid token was not used while the refresh failed"
    assert max(handed_out) < expires
