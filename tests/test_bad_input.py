"""Bad configuration fails at construction with a ConfigurationError whose ``field`` names the setting.

One row per bad input: what is built (MaskinportenAuth, a signer, an environment, a policy) and the field the
error must name. Nothing here makes a request: a bad setting must never survive until the first token fetch.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from maskinporten_auth import (
    ConfigurationError,
    Environment,
    LocalKeySigner,
    MaskinportenAuth,
    RefreshPolicy,
    RetryPolicy,
)

CLIENT_ID = "1ab20f23-c69c-44d3-b078-a0d92083ada5"
SCOPE = "nav:oppfolgingsplan/lps.write"
DAY = datetime.timedelta(days=1)


@dataclass(frozen=True)
class Kit:
    """Valid ingredients, and broken ones, for the rows."""

    key: rsa.RSAPrivateKey
    pem: bytes
    encrypted_pem: bytes
    private_jwk: dict[str, Any]
    certificate_pem: bytes
    other_certificate_pem: bytes
    expired_certificate_pem: bytes
    future_certificate_pem: bytes
    pkcs12: bytes
    certificate_only_pkcs12: bytes

    @property
    def signer(self) -> LocalKeySigner:
        return LocalKeySigner(self.key, kid="kid-1")

    def auth(self, **overrides: Any) -> MaskinportenAuth:
        settings: dict[str, Any] = {"client_id": CLIENT_ID, "scopes": SCOPE, "signer": self.signer, **overrides}
        return MaskinportenAuth(**settings)


def _pem(certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def kit(rsa_key, other_rsa_key, make_certificate, private_jwk) -> Kit:
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = make_certificate(rsa_key, "REGNSKAP AS")
    return Kit(
        key=rsa_key,
        pem=rsa_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        encrypted_pem=rsa_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        ),
        private_jwk=private_jwk(rsa_key, kid="kid-1"),
        certificate_pem=_pem(certificate),
        other_certificate_pem=_pem(make_certificate(other_rsa_key, "ANDRE AS")),
        expired_certificate_pem=_pem(
            make_certificate(rsa_key, "GAMMEL AS", not_before=now - 400 * DAY, not_after=now - DAY)
        ),
        future_certificate_pem=_pem(
            make_certificate(rsa_key, "FRAMTID AS", not_before=now + DAY, not_after=now + 400 * DAY)
        ),
        pkcs12=pkcs12.serialize_key_and_certificates(
            b"v", rsa_key, certificate, None, serialization.BestAvailableEncryption(b"secret")
        ),
        certificate_only_pkcs12=pkcs12.serialize_key_and_certificates(
            b"v", None, certificate, None, serialization.NoEncryption()
        ),
    )


def _without(mapping: dict[str, Any], *names: str) -> dict[str, Any]:
    return {name: value for name, value in mapping.items() if name not in names}


Build = Callable[[Kit], object]

#: (row id, what to build, the field the ConfigurationError must name)
BAD_INPUTS: list[tuple[str, Build, str]] = [
    # client_id
    ("client-id-empty", lambda k: k.auth(client_id=""), "client_id"),
    ("client-id-none", lambda k: k.auth(client_id=None), "client_id"),
    ("client-id-int", lambda k: k.auth(client_id=1234), "client_id"),
    ("client-id-with-space", lambda k: k.auth(client_id="1ab20f23 c69c"), "client_id"),
    ("client-id-with-newline", lambda k: k.auth(client_id=CLIENT_ID + "\n"), "client_id"),
    # scopes
    ("scopes-empty-list", lambda k: k.auth(scopes=[]), "scopes"),
    ("scopes-empty-string", lambda k: k.auth(scopes=""), "scopes"),
    ("scopes-none", lambda k: k.auth(scopes=None), "scopes"),
    ("scopes-set", lambda k: k.auth(scopes={SCOPE}), "scopes"),
    ("scopes-non-string-item", lambda k: k.auth(scopes=[SCOPE, 7]), "scopes"),
    ("scopes-control-character", lambda k: k.auth(scopes=["nav:a\x00b"]), "scopes"),
    # signer
    ("signer-none", lambda k: k.auth(signer=None), "signer"),
    ("signer-key-uri-string", lambda k: k.auth(signer="file:///etc/maskinporten/key.pem"), "signer"),
    ("signer-raw-rsa-key", lambda k: k.auth(signer=k.key), "signer"),
    ("signer-without-kid-or-x5c", lambda k: k.auth(signer=LocalKeySigner(k.key)), "kid"),
    # environment and URLs
    ("environment-unknown-name", lambda k: k.auth(environment="staging"), "environment"),
    ("environment-retired-ver2", lambda k: k.auth(environment="ver2"), "environment"),
    ("environment-none", lambda k: k.auth(environment=None), "environment"),
    ("environment-int", lambda k: k.auth(environment=1), "environment"),
    (
        "issuer-plain-http",
        lambda k: Environment(issuer="http://maskinporten.no/", token_endpoint="https://maskinporten.no/token"),
        "environment.issuer",
    ),
    (
        "issuer-with-credentials",
        lambda k: Environment(issuer="https://u:p@maskinporten.no/", token_endpoint="https://maskinporten.no/token"),
        "environment.issuer",
    ),
    (
        "issuer-relative",
        lambda k: Environment(issuer="/maskinporten/", token_endpoint="https://maskinporten.no/token"),
        "environment.issuer",
    ),
    (
        "token-endpoint-ftp",
        lambda k: Environment(issuer="https://maskinporten.no/", token_endpoint="ftp://maskinporten.no/token"),
        "environment.token_endpoint",
    ),
    (
        "token-endpoint-empty",
        lambda k: Environment(issuer="https://maskinporten.no/", token_endpoint=""),
        "environment.token_endpoint",
    ),
    (
        "jwks-uri-plain-http",
        lambda k: Environment(
            issuer="https://maskinporten.no/",
            token_endpoint="https://maskinporten.no/token",
            jwks_uri="http://maskinporten.no/jwk",
        ),
        "environment.jwks_uri",
    ),
    # consumer_org (orgnr)
    ("consumer-org-eight-digits", lambda k: k.auth(consumer_org="31053975"), "consumer_org"),
    ("consumer-org-bad-check-digit", lambda k: k.auth(consumer_org="310539758"), "consumer_org"),
    ("consumer-org-with-prefix", lambda k: k.auth(consumer_org="0192:310539759"), "consumer_org"),
    ("consumer-org-int", lambda k: k.auth(consumer_org=310539759), "consumer_org"),
    ("consumer-org-with-spaces", lambda k: k.auth(consumer_org="310 539 759"), "consumer_org"),
    ("consumer-org-remainder-one", lambda k: k.auth(consumer_org="100000010"), "consumer_org"),
    ("with-consumer-org-invalid", lambda k: k.auth().with_consumer_org("123456789"), "consumer_org"),
    # resource, authorization_details, pid
    ("resource-empty", lambda k: k.auth(resource=""), "resource"),
    ("resource-empty-list", lambda k: k.auth(resource=[]), "resource"),
    ("resource-with-space", lambda k: k.auth(resource=["https://api.example.no/a b"]), "resource"),
    ("resource-int", lambda k: k.auth(resource=42), "resource"),
    ("authorization-details-empty", lambda k: k.auth(authorization_details=[]), "authorization_details"),
    ("authorization-details-string", lambda k: k.auth(authorization_details="systemuser"), "authorization_details"),
    ("authorization-details-no-type", lambda k: k.auth(authorization_details=[{"a": 1}]), "authorization_details"),
    (
        "authorization-details-not-json",
        lambda k: k.auth(authorization_details=[{"type": "urn:altinn:systemuser", "when": datetime.date.today()}]),
        "authorization_details",
    ),
    ("pid-ten-digits", lambda k: k.auth(pid="1234567890"), "pid"),
    ("pid-int", lambda k: k.auth(pid=12345678901), "pid"),
    ("pid-letters", lambda k: k.auth(pid="1234567890x"), "pid"),
    # lifetimes
    ("grant-lifetime-zero", lambda k: k.auth(grant_lifetime=0), "grant_lifetime"),
    ("grant-lifetime-over-120", lambda k: k.auth(grant_lifetime=121), "grant_lifetime"),
    ("grant-lifetime-float", lambda k: k.auth(grant_lifetime=60.5), "grant_lifetime"),
    ("grant-lifetime-bool", lambda k: k.auth(grant_lifetime=True), "grant_lifetime"),
    ("grant-lifetime-string", lambda k: k.auth(grant_lifetime="60"), "grant_lifetime"),
    # retry and refresh policies, callbacks
    ("retry-dict", lambda k: k.auth(retry={"attempts": 3}), "retry"),
    # HTTP clients
    ("http-client-proxy-url", lambda k: k.auth(http_client="http://proxy.example:3128"), "http_client"),
    ("http-client-async-client", lambda k: k.auth(http_client=httpx.AsyncClient()), "http_client"),
    ("retry-attempts-zero", lambda k: RetryPolicy(attempts=0), "retry.attempts"),
    ("retry-attempts-float", lambda k: RetryPolicy(attempts=2.5), "retry.attempts"),
    ("retry-deadline-zero", lambda k: RetryPolicy(deadline=0), "retry.deadline"),
    ("retry-deadline-infinite", lambda k: RetryPolicy(deadline=float("inf")), "retry.deadline"),
    ("retry-backoff-negative", lambda k: RetryPolicy(backoff=-1), "retry.backoff"),
    ("retry-max-backoff-string", lambda k: RetryPolicy(max_backoff="5"), "retry.max_backoff"),
    ("retry-timeout-nan", lambda k: RetryPolicy(timeout=float("nan")), "retry.timeout"),
    ("retry-timeout-infinite", lambda k: RetryPolicy(timeout=float("inf")), "retry.timeout"),
    ("refresh-string", lambda k: k.auth(refresh="early"), "refresh"),
    ("refresh-window-reversed", lambda k: RefreshPolicy(refresh_window=(0.7, 0.5)), "refresh.refresh_window"),
    ("refresh-window-from-zero", lambda k: RefreshPolicy(refresh_window=(0, 0.5)), "refresh.refresh_window"),
    ("refresh-window-to-one", lambda k: RefreshPolicy(refresh_window=(0.5, 1.0)), "refresh.refresh_window"),
    ("refresh-window-scalar", lambda k: RefreshPolicy(refresh_window=0.5), "refresh.refresh_window"),
    ("refresh-window-strings", lambda k: RefreshPolicy(refresh_window=("a", "b")), "refresh.refresh_window"),
    ("refresh-margin-one", lambda k: RefreshPolicy(must_refresh_margin=1.0), "refresh.must_refresh_margin"),
    ("refresh-margin-string", lambda k: RefreshPolicy(must_refresh_margin="x"), "refresh.must_refresh_margin"),
    ("refresh-min-above-max", lambda k: RefreshPolicy(min_margin=10, max_margin=5), "refresh.min_margin"),
    ("refresh-min-none", lambda k: RefreshPolicy(min_margin=None), "refresh.min_margin"),
    ("refresh-cooldown-negative", lambda k: RefreshPolicy(failure_cooldown=-1), "refresh.failure_cooldown"),
    ("refresh-cooldown-nan", lambda k: RefreshPolicy(failure_cooldown=float("nan")), "refresh.failure_cooldown"),
    ("on-event-not-callable", lambda k: k.auth(on_event="print"), "on_event"),
    # keys
    ("pem-garbage", lambda k: LocalKeySigner.from_pem(b"not a key", kid="k"), "key"),
    ("pem-public-key-only", lambda k: LocalKeySigner.from_pem(k.certificate_pem, kid="k"), "key"),
    ("pem-encrypted-without-password", lambda k: LocalKeySigner.from_pem(k.encrypted_pem, kid="k"), "password"),
    (
        "pem-wrong-password",
        lambda k: LocalKeySigner.from_pem(k.encrypted_pem, kid="k", password="wrong"),
        "password",
    ),
    ("pem-password-not-needed", lambda k: LocalKeySigner.from_pem(k.pem, kid="k", password="x"), "password"),
    (
        "pem-ec-key",
        lambda k: LocalKeySigner.from_pem(
            ec.generate_private_key(ec.SECP256R1()).private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
            kid="k",
        ),
        "key",
    ),
    (
        "rsa-1024-bits",
        lambda k: LocalKeySigner(rsa.generate_private_key(public_exponent=65537, key_size=1024), kid="k"),
        "private_key",
    ),
    ("pem-file-missing", lambda k: LocalKeySigner.from_pem_file("/nonexistent/key.pem", kid="k"), "key"),
    ("algorithm-es256", lambda k: LocalKeySigner(k.key, kid="k", algorithm="ES256"), "algorithm"),
    ("algorithm-ps256", lambda k: LocalKeySigner(k.key, kid="k", algorithm="PS256"), "algorithm"),
    ("algorithm-lowercase", lambda k: LocalKeySigner(k.key, kid="k", algorithm="rs256"), "algorithm"),
    ("kid-empty", lambda k: LocalKeySigner(k.key, kid=""), "kid"),
    ("kid-padded", lambda k: LocalKeySigner(k.key, kid=" kid-1 "), "kid"),
    ("kid-int", lambda k: LocalKeySigner(k.key, kid=1), "kid"),
    ("jwk-not-json", lambda k: LocalKeySigner.from_jwk("{not json"), "jwk"),
    (
        "jwk-public-only",
        lambda k: LocalKeySigner.from_jwk(_without(k.private_jwk, "d", "p", "q", "dp", "dq", "qi")),
        "jwk",
    ),
    ("jwk-missing-primes", lambda k: LocalKeySigner.from_jwk(_without(k.private_jwk, "p", "q")), "jwk"),
    ("jwk-ec", lambda k: LocalKeySigner.from_jwk({**k.private_jwk, "kty": "EC"}), "jwk"),
    ("jwk-set-of-two", lambda k: LocalKeySigner.from_jwk({"keys": [k.private_jwk, k.private_jwk]}), "jwk"),
    ("jwk-broken-d", lambda k: LocalKeySigner.from_jwk(json.dumps({**k.private_jwk, "d": "AQAB"})), "jwk"),
    # certificates
    (
        "certificate-garbage",
        lambda k: LocalKeySigner(k.key, certificate_chain=b"-----BEGIN CERTIFICATE-----\nAAAA\n"),
        "certificate_chain",
    ),
    (
        "certificate-of-another-key",
        lambda k: LocalKeySigner(k.key, certificate_chain=k.other_certificate_pem),
        "certificate_chain",
    ),
    (
        "certificate-expired",
        lambda k: LocalKeySigner(k.key, certificate_chain=k.expired_certificate_pem),
        "certificate_chain",
    ),
    (
        "certificate-not-yet-valid",
        lambda k: LocalKeySigner(k.key, certificate_chain=k.future_certificate_pem),
        "certificate_chain",
    ),
    ("certificate-and-kid", lambda k: LocalKeySigner(k.key, kid="k", certificate_chain=k.certificate_pem), "kid"),
    ("pkcs12-without-password", lambda k: LocalKeySigner.from_pkcs12(k.pkcs12, password=None), "password"),
    ("pkcs12-wrong-password", lambda k: LocalKeySigner.from_pkcs12(k.pkcs12, password="wrong"), "password"),
    ("pkcs12-without-key", lambda k: LocalKeySigner.from_pkcs12(k.certificate_only_pkcs12, password=None), "pkcs12"),
    ("pkcs12-file-missing", lambda k: LocalKeySigner.from_pkcs12_file("/nonexistent.p12", password="x"), "pkcs12"),
]


def test_the_table_covers_at_least_forty_inputs_with_unique_ids():
    ids = [row_id for row_id, _, _ in BAD_INPUTS]
    assert len(ids) >= 40
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize(("build", "field"), [row[1:] for row in BAD_INPUTS], ids=[row[0] for row in BAD_INPUTS])
def test_bad_input_is_rejected_at_construction_naming_the_field(kit, build, field):
    with pytest.raises(ConfigurationError) as raised:
        build(kit)
    error = raised.value
    assert error.field == field
    assert str(error).startswith(f"{field}: ")
    assert error.problem


def test_the_valid_kit_builds(kit):
    """The rows fail for the one thing each breaks: the same ingredients, unbroken, are accepted."""
    assert kit.auth(consumer_org="310539759", resource=["https://api.example.no"], pid="12345678901")
    assert LocalKeySigner.from_pem(kit.pem, kid="k")
    assert LocalKeySigner.from_pem(kit.encrypted_pem, kid="k", password="secret")
    assert LocalKeySigner.from_jwk(kit.private_jwk)
    assert LocalKeySigner(kit.key, certificate_chain=kit.certificate_pem).x5c
    assert LocalKeySigner.from_pkcs12(kit.pkcs12, password="secret").x5c
    assert RetryPolicy(attempts=1, deadline=1, backoff=0.1, max_backoff=0.1, timeout=1)
    assert RefreshPolicy(refresh_window=(0.1, 0.9), must_refresh_margin=0, min_margin=0, failure_cooldown=0)
