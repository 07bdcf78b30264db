"""The local Maskinporten emulator: a real HTTP server on loopback that validates grants and issues tokens."""

from __future__ import annotations

import collections
import dataclasses
import datetime
import json
import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from ..environment import Environment
from ..jwk import public_key_from_jwk
from ..jws import RSA_ALGORITHMS, CompactJws, MalformedJws
from .altinn import ALTINN_TOKEN_LIFETIME, SystemRegister, exchange_claims
from .faults import Fault, FaultQueue
from .registry import KeyInput, Registry
from .rejection import Rejection
from .selfservice import DEFAULT_SCOPE_CATALOGUE, SelfServiceApi, verify_own_token
from .server import Answer, EmulatorServer
from .tokens import AccessTokenSigner, access_token_claims
from .validation import AUTHORIZATION_DETAILS_TYPES, JWT_BEARER, GrantValidator, read_assertion

__all__ = ["GrantRecord", "MaskinportenEmulator"]

logger = logging.getLogger("maskinporten_auth.testing")
DEFAULT_TOKEN_LIFETIME = 120


@dataclasses.dataclass
class GrantRecord:
    """One token request as the emulator received it.

    ``header`` and ``claims`` are the grant's, decoded without verification (None when the assertion could not be
    decoded); ``received_at`` is emulator time. ``status``, ``error`` and ``code`` tell how it was answered; they
    stay None while the request is in progress, and ``status`` stays None when a fault dropped or reset the
    connection. ``fault`` is the fault applied to it, if any.
    """

    received_at: float
    header: dict[str, Any] | None
    claims: dict[str, Any] | None
    fault: Fault | None = None
    status: int | None = None
    error: str | None = None
    code: str | None = None

    @property
    def jti(self) -> str | None:
        """The grant's ``jti``, when it had a string one."""
        jti = (self.claims or {}).get("jti")
        return jti if isinstance(jti, str) else None


def _decode_for_record(body: bytes) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Best-effort decoding of the form's assertion, for the record only: nothing is checked here."""
    try:
        assertion = parse_qs(body.decode("utf-8")).get("assertion", [""])[0]
        jws = CompactJws.parse(assertion)
    except (UnicodeDecodeError, MalformedJws):
        return None, None
    return jws.header, jws.claims


class MaskinportenEmulator:
    """A local Maskinporten: serves the metadata, ``/jwk`` and ``POST /token`` on ``host:port``.

    Grants are checked as strictly as Maskinporten does, in its order and with its MP codes (see
    maskinporten-protocol.md); accepted grants get an RS256 access token signed by the emulator's own key.

    Args:
        host: the loopback address to listen on.
        port: the port; 0 picks a free one when the server starts.
        token_lifetime: access-token lifetime in seconds (``expires_in``), unless a scope says otherwise.
        scope_lifetimes: per-scope lifetimes, like Maskinporten's ``at_max_age`` (Altinn scopes: 3600). A token
            for several scopes lives as long as the shortest of them.
        clock_offset: seconds added to the real clock; shifts the grant checks, ``iat``/``exp`` of issued tokens
            and the ``Date`` header.
        delegation_source: the ``delegation_source`` claim of tokens issued through Altinn delegation.
        signing_key: the RSA key that signs access tokens; by default a fresh one (sharing one between emulators
            saves the key generation, about 60 ms, per emulator).
        altinn_token_lifetime: the lifetime in seconds of the Altinn tokens the emulated exchange issues.
        propagation_delay: seconds before a change to a client's keys made through the self-service API reaches
            the token endpoint (Maskinporten's take 0-2 minutes); until then a new kid is unknown.
        scope_catalogue: the entries the self-service API's ``/api/v1/scopes/all`` serves.

    It also plays Altinn 3: :meth:`add_systemuser` fills an emulated system register, against which system-user grants
    are checked as Maskinporten does (MP-303 with each documented cause), :meth:`add_consent` records consents
    (a consent grant for an unknown, foreign or expired consent is refused), and Altinn's token exchange answers at
    ``{url}/authentication/api/v1/exchange/maskinporten`` (so :attr:`url` is a platform base URL for
    :class:`~maskinporten_auth.AltinnAuth`).

    And Digdir's self-service API at :attr:`selfservice_url` (``/api/v1/clients/{id}/jwks`` with the 5-key limit,
    whole-set replacement, per-key expiry a year after posting, and :attr:`propagation_delay`; the public
    ``/api/v1/scopes/all``), authenticated by tokens this emulator issued with ``idporten:dcr.read`` or
    ``idporten:dcr.write``.

    Use it as a context manager (or call :meth:`start` and :meth:`stop`), or block in :meth:`serve_forever`.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token_lifetime: int = DEFAULT_TOKEN_LIFETIME,
        scope_lifetimes: Mapping[str, int] | None = None,
        clock_offset: float = 0.0,
        delegation_source: str = "https://tt02.altinn.no",
        signing_key: rsa.RSAPrivateKey | None = None,
        altinn_token_lifetime: int = ALTINN_TOKEN_LIFETIME,
        propagation_delay: float = 0.0,
        scope_catalogue: Iterable[Mapping[str, Any]] = DEFAULT_SCOPE_CATALOGUE,
    ) -> None:
        self.host = host
        self.port = port
        self.token_lifetime = token_lifetime
        self.clock_offset = clock_offset
        self.delegation_source = delegation_source
        self._scope_lifetimes = dict(scope_lifetimes or {})
        self.altinn_token_lifetime = altinn_token_lifetime
        self._registry = Registry()
        self._systems = SystemRegister()
        self._faults = FaultQueue()
        self._exchange_faults = FaultQueue()
        self._exchanges = 0
        self._signer = AccessTokenSigner(signing_key)
        self._selfservice = SelfServiceApi(
            self._registry,
            lambda token, now: verify_own_token(token, self.jwks, self.issuer, now),
            propagation_delay=propagation_delay,
            scope_catalogue=scope_catalogue,
            scope_lifetimes=self._scope_lifetimes,
        )
        self._lock = threading.Lock()
        self._records: list[GrantRecord] = []
        self._jti_counts: collections.Counter[str] = collections.Counter()
        self._token_requests = 0
        self._in_flight = 0
        self._peak_in_flight = 0
        self._tokens_issued = 0
        self._stopping = threading.Event()
        self._server: EmulatorServer | None = None
        self._thread: threading.Thread | None = None

    # Lifecycle

    def _bind(self) -> EmulatorServer:
        if self._server is not None:
            raise RuntimeError("the emulator is already running")
        self._server = EmulatorServer((self.host, self.port), self)
        self.port = self._server.server_address[1]
        return self._server

    def start(self) -> MaskinportenEmulator:
        """Start serving in a background thread and return self."""
        server = self._bind()
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"maskinporten-emulator:{self.port}"
        )
        self._thread.start()
        logger.info("Maskinporten emulator listening on %s", self.url)
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until :meth:`stop` is called from another thread or Ctrl-C."""
        server = self._bind()
        logger.info("Maskinporten emulator listening on %s", self.url)
        try:
            server.serve_forever(poll_interval=0.2)
        finally:
            self._close()

    def stop(self) -> None:
        """Stop serving: end delayed answers, close open connections and wait for every server thread."""
        if self._server is None:
            return
        self._server.shutdown()
        if self._thread is not None:
            self._thread.join()
            self._close()

    def _close(self) -> None:
        server, self._server, self._thread = self._server, None, None
        if server is not None:
            self._stopping.set()
            server.close_open_connections()
            server.server_close()

    def __enter__(self) -> MaskinportenEmulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    # Addresses

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:50123`` (known once the server is bound)."""
        if self._server is None and self.port == 0:
            raise RuntimeError("the emulator has no port yet: start it first")
        return f"http://{self.host}:{self.port}"

    @property
    def issuer(self) -> str:
        """The issuer, which grants must name as ``aud``: :attr:`url` with a trailing slash."""
        return self.url + "/"

    @property
    def environment(self) -> Environment:
        """An :class:`~maskinporten_auth.Environment` pointing at this emulator."""
        return Environment(
            issuer=self.issuer, token_endpoint=self.url + "/token", jwks_uri=self.url + "/jwk", name="emulator"
        )

    @property
    def selfservice_url(self) -> str:
        """The base URL of the emulated self-service API (the part before ``/api/v1``): :attr:`url`."""
        return self.url

    @property
    def jwks(self) -> dict[str, Any]:
        """The public JWKS that verifies the access tokens this emulator issues (as served at ``/jwk``)."""
        return self._signer.jwks

    def metadata(self) -> dict[str, Any]:
        """The authorization-server metadata served at ``/.well-known/oauth-authorization-server``."""
        return {
            "issuer": self.issuer,
            "token_endpoint": self.url + "/token",
            "jwks_uri": self.url + "/jwk",
            "grant_types_supported": [JWT_BEARER],
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": list(RSA_ALGORITHMS),
            "authorization_details_types_supported": list(AUTHORIZATION_DETAILS_TYPES),
        }

    # Configuration

    def now(self) -> float:
        """The emulator's clock: the real time plus :attr:`clock_offset` (POSIX seconds)."""
        return time.time() + self.clock_offset

    def register_client(
        self,
        client_id: str,
        *,
        orgno: str,
        scopes: str | Iterable[str],
        keys: Mapping[str, KeyInput] | None = None,
        certificates: Iterable[x509.Certificate | bytes | str] | None = None,
    ) -> None:
        """Register (or replace) an integration.

        Args:
            client_id: the integration's client id, the grant's ``iss``.
            orgno: the owner's organisation number (the token's ``consumer`` or, with delegation, ``supplier``).
            scopes: the scopes registered on the integration (a str is space separated).
            keys: public keys by ``kid``: PEM bytes or str, a ``cryptography`` RSA public key, a JWK dict, or a
                :class:`~maskinporten_auth.testing.ClientKey` with an expiry (expired keys give MP-121).
            certificates: CA or leaf certificates (``x509.Certificate`` or PEM) trusted for ``x5c`` grants; a chain
                must lead to one of them.
        """
        with self._lock:
            self._registry.register_client(client_id, orgno=orgno, scopes=scopes, keys=keys, certificates=certificates)
            self._selfservice.registered(client_id, self.now())

    def delegate(self, consumer_org: str, supplier_org: str, scope: str) -> None:
        """Let ``consumer_org`` delegate ``scope`` to ``supplier_org``, as its daglig leder would in Altinn."""
        with self._lock:
            self._registry.delegate(consumer_org, supplier_org, scope)

    def add_systemuser(
        self,
        owner_orgno: str,
        supplier_client_id: str | None,
        *,
        system_id: str,
        external_ref: str | None = None,
        clients: Iterable[str] = (),
    ) -> str:
        """Add an Altinn system user that customer ``owner_orgno`` approved for the vendor's system ``system_id``.

        ``supplier_client_id`` is registered on the system in the system register (None registers none, as a vendor
        who forgot). ``external_ref`` is the reference the system user request was made with (by default the
        owner's organisation number); ``clients`` makes it an agent system user for those customers. Returns the
        system user's id, which tokens carry in ``systemuser_id``.
        """
        with self._lock:
            return self._systems.add_systemuser(
                owner_orgno, supplier_client_id, system_id=system_id, external_ref=external_ref, clients=clients
            ).id

    @property
    def propagation_delay(self) -> float:
        """Seconds before a key change made through the self-service API reaches the token endpoint."""
        return self._selfservice.propagation_delay

    @propagation_delay.setter
    def propagation_delay(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("propagation_delay must not be negative")
        with self._lock:
            self._selfservice.propagation_delay = seconds

    def add_consent(
        self,
        from_party: str,
        to: str,
        *,
        valid_to: datetime.datetime | None = None,
        consent_id: str | None = None,
        rights: Sequence[Mapping[str, Any]] = (),
    ) -> str:
        """Record a consent (samtykke) that ``from_party`` approved for the data consumer ``to``; return its id.

        ``from_party`` is an organisation number, a national identity number or a party URN; ``to`` the
        organisation number of the token's consumer. Tokens under it are issued until ``valid_to`` (an aware
        datetime; by default a year from now on the emulator's clock); after that, and for a consent id the
        emulator does not know, the grant is refused with MP-303. ``rights`` become the token's ``consentRights``.
        """
        consented = datetime.datetime.fromtimestamp(self.now(), datetime.timezone.utc)
        with self._lock:
            return self._systems.add_consent(
                from_party,
                to,
                valid_to=valid_to or consented + datetime.timedelta(days=365),
                consented=consented,
                consent_id=consent_id,
                rights=rights,
            ).id

    def set_scope_lifetime(self, scope: str, seconds: int) -> None:
        """Give tokens for ``scope`` a lifetime of ``seconds`` (Maskinporten's ``at_max_age``)."""
        if seconds < 1:
            raise ValueError("a token lifetime is at least 1 second")
        with self._lock:
            self._scope_lifetimes[scope] = seconds

    def inject_fault(
        self,
        fault: Fault | None = None,
        *,
        status: int | None = None,
        body: bytes | str | dict[str, Any] | list[Any] | None = None,
        headers: Mapping[str, str] | None = None,
        content_type: str | None = None,
        delay: float | None = None,
        drop: bool | None = None,
        reset: bool | None = None,
        times: int = 1,
    ) -> Fault:
        """Spoil the next ``times`` token requests (after faults already queued) and return the fault queued.

        Pass a :class:`Fault` (``Fault.server_error(503)``, ``Fault.rate_limited(retry_after=2)``,
        ``Fault.slow(1.5)``, ``Fault.dropped_connection()``, ``Fault.reset_connection()``,
        ``Fault.malformed_json()``, ``Fault.html_error_page()``, ``Fault.missing_access_token()``,
        ``Fault.invalid_expires_in()``), or build one from the keywords, which also override a given fault's
        fields. See :class:`Fault` for their meaning.
        """
        overrides: dict[str, Any] = {
            name: value
            for name, value in (
                ("status", status),
                ("body", body),
                ("headers", headers),
                ("content_type", content_type),
                ("delay", delay),
                ("drop", drop),
                ("reset", reset),
            )
            if value is not None
        }
        queued = dataclasses.replace(fault or Fault(), **overrides)
        self._faults.add(queued, times)
        return queued

    def inject_exchange_fault(self, fault: Fault, *, times: int = 1) -> Fault:
        """Spoil the next ``times`` requests to Altinn's token exchange with ``fault`` (as :meth:`inject_fault`)."""
        self._exchange_faults.add(fault, times)
        return fault

    def clear_faults(self) -> None:
        """Forget every queued fault."""
        self._faults.clear()
        self._exchange_faults.clear()

    # What happened

    @property
    def grants(self) -> list[GrantRecord]:
        """Every token request received, in order (faulted and rejected ones included)."""
        with self._lock:
            return list(self._records)

    @property
    def reused_jtis(self) -> list[str]:
        """Every ``jti`` that arrived in more than one token request; a correct client keeps this empty."""
        with self._lock:
            return sorted(jti for jti, count in self._jti_counts.items() if count > 1)

    @property
    def token_requests(self) -> int:
        """How many ``POST /token`` requests arrived."""
        with self._lock:
            return self._token_requests

    @property
    def peak_in_flight(self) -> int:
        """The most ``POST /token`` requests that were being answered at once (a client's in-flight bound).

        Counted since the emulator started, or since :meth:`restart_peak_in_flight`.
        """
        with self._lock:
            return self._peak_in_flight

    def restart_peak_in_flight(self) -> None:
        """Count :attr:`peak_in_flight` from now on (from the requests being answered now)."""
        with self._lock:
            self._peak_in_flight = self._in_flight

    @property
    def tokens_issued(self) -> int:
        """How many access tokens were issued."""
        with self._lock:
            return self._tokens_issued

    @property
    def exchanges(self) -> int:
        """How many Altinn tokens the exchange issued."""
        with self._lock:
            return self._exchanges

    # Altinn's token exchange

    def answer_exchange(self, authorization: str | None, query: str) -> Answer:
        """Answer one ``GET /authentication/api/v1/exchange/maskinporten``: an Altinn token, or 401."""
        fault = self._exchange_faults.next()
        if fault is not None and fault.delay and self._stopping.wait(fault.delay):
            return Answer(disconnect="drop")
        if fault is not None and fault.replaces_answer:
            return self._fault_answer(fault)
        test = parse_qs(query).get("test", ["false"])[0].lower() == "true"
        claims = exchange_claims(
            authorization,
            public_key=public_key_from_jwk(self.jwks["keys"][0]),
            maskinporten_issuer=self.issuer,
            platform=self.url,
            now=self.now(),
            test=test,
            lifetime=self.altinn_token_lifetime,
        )
        if claims is None:
            problem = {"title": "Unauthorized", "status": 401, "detail": "Not a valid Maskinporten token."}
            return Answer(401, json.dumps(problem).encode("utf-8"), "application/problem+json")
        with self._lock:
            self._exchanges += 1
        logger.info("Altinn token issued to %s", claims.get("client_id"))
        return Answer(200, json.dumps(self._signer.sign(claims)).encode("utf-8"), "application/json")

    # Digdir's self-service API

    def answer_selfservice(self, method: str, path: str, authorization: str | None, body: bytes) -> Answer:
        """Answer one request to the self-service API (``/api/v1/...``)."""
        with self._lock:
            return self._selfservice.answer(method, path, authorization, body, self.now())

    # Token endpoint

    def answer_token_request(self, content_type: str | None, body: bytes) -> Answer:
        """Record, spoil if a fault is queued, validate and answer one ``POST /token``."""
        with self._lock:
            self._in_flight += 1
            self._peak_in_flight = max(self._peak_in_flight, self._in_flight)
        try:
            return self._answer_token_request(content_type, body)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _answer_token_request(self, content_type: str | None, body: bytes) -> Answer:
        record, jti_seen_before = self._record(body)
        fault = self._faults.next()
        if fault is not None and fault.delay and self._stopping.wait(fault.delay):
            return Answer(disconnect="drop")
        rejection = None
        if fault is not None and fault.replaces_answer:
            answer = self._fault_answer(fault)
        else:
            try:
                answer = self._issue(content_type, body, jti_seen_before)
            except Rejection as refused:
                logger.info("Token request refused: %s", refused)
                rejection, answer = refused, Answer.json(refused.status, refused.body(self.url))
            if fault is not None:
                answer = dataclasses.replace(answer, headers={**answer.headers, **fault.headers})
        if fault is not None and fault.drip:
            answer = dataclasses.replace(answer, drip=fault.drip, drip_body_only=fault.drip_body_only)
        with self._lock:
            record.fault = fault
            record.status = None if answer.disconnect else answer.status
            if rejection is not None:
                record.error, record.code = rejection.error, rejection.code
        return answer

    def _record(self, body: bytes) -> tuple[GrantRecord, bool]:
        header, claims = _decode_for_record(body)
        record = GrantRecord(received_at=self.now(), header=header, claims=claims)
        with self._lock:
            self._token_requests += 1
            self._records.append(record)
            jti_seen_before = record.jti is not None and self._jti_counts[record.jti] > 0
            if record.jti is not None:
                self._jti_counts[record.jti] += 1
        return record, jti_seen_before

    @staticmethod
    def _fault_answer(fault: Fault) -> Answer:
        if fault.drop or fault.reset:
            return Answer(disconnect="drop" if fault.drop else "reset")
        body, content_type = fault.encoded_body()
        return Answer(fault.status or 200, body, content_type, dict(fault.headers))

    def _issue(self, content_type: str | None, body: bytes, jti_seen_before: bool) -> Answer:
        """Validate the request and answer with a new access token; raise the :class:`Rejection` otherwise."""
        now = self.now()
        assertion = read_assertion(content_type, body)
        with self._lock:
            self._selfservice.publish(now)
            validator = GrantValidator(self._registry, issuer=self.issuer, now=now, jti_seen_before=jti_seen_before)
            grant = validator.validate(assertion)
            details = self._systems.token_details(grant, now)
            lifetime = min(self._scope_lifetimes.get(scope, self.token_lifetime) for scope in grant.scopes)
        claims = access_token_claims(
            grant,
            issuer=self.issuer,
            now=now,
            lifetime=lifetime,
            delegation_source=self.delegation_source,
            authorization_details=details,
        )
        with self._lock:
            self._tokens_issued += 1
        logger.info(
            "Token issued to %s for %s (consumer %s)", grant.client.client_id, claims["scope"], grant.consumer_org
        )
        token = self._signer.sign(claims)
        return Answer.json(
            200, {"access_token": token, "token_type": "Bearer", "expires_in": lifetime, "scope": claims["scope"]}
        )
