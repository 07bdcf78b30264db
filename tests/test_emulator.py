"""The Maskinporten emulator, tested over real HTTP with grants built independently of the client code.

Grants are made with python-jose, or by hand with ``cryptography`` where jose refuses (odd headers); access tokens
are verified with python-jose against the emulator's JWKS.
"""

from __future__ import annotations

import base64
import datetime
import email.utils
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from jose import jwt  # type: ignore[import-untyped]

from maskinporten_auth.jwk import b64url, rsa_public_jwk
from maskinporten_auth.testing import ClientKey, Fault, MaskinportenEmulator

CLIENT_ID = "1ab20f23-c69c-44d3-b078-a0d92083ada5"
KID = "emulator-test-key"
SUPPLIER = "313042995"  # Regnskap AS
CUSTOMER = "310539759"  # Baker AS
OTHER_CUSTOMER = "313990265"
SCOPE = "nav:oppfolgingsplan/lps.write"
ALTINN_SCOPE = "altinn:serviceowner/instances.read"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
HASHES = {"RS256": hashes.SHA256, "RS384": hashes.SHA384, "RS512": hashes.SHA512}


# Keys, certificates and grants, made without the project's client code


@pytest.fixture(scope="module")
def client_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def stranger_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def der_b64(certificate: x509.Certificate) -> str:
    return base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)).decode("ascii")


def make_certificate(
    subject_key: rsa.RSAPrivateKey,
    name: str,
    *,
    issuer: tuple[x509.Certificate, rsa.RSAPrivateKey] | None = None,
    ca: bool = False,
    expired: bool = False,
    subject_attributes: tuple[x509.NameAttribute, ...] = (),
) -> x509.Certificate:
    """A certificate for ``subject_key``, self-signed or issued by ``issuer`` (certificate, key)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name), *subject_attributes])
    issuer_name, signing_key = (subject, subject_key) if issuer is None else (issuer[0].subject, issuer[1])
    not_after = now - datetime.timedelta(days=1) if expired else now + datetime.timedelta(days=30)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(subject_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=60))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(signing_key, hashes.SHA256())
    )


@pytest.fixture(scope="module")
def ca() -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return make_certificate(key, "Test Buypass Class 3 CA", ca=True), key


@pytest.fixture(scope="module")
def leaf(client_key: rsa.RSAPrivateKey, ca: tuple[x509.Certificate, rsa.RSAPrivateKey]) -> x509.Certificate:
    return make_certificate(client_key, "REGNSKAP AS", issuer=ca)


def claims_for(emulator: MaskinportenEmulator, **overrides: Any) -> dict[str, Any]:
    """Valid grant claims for CLIENT_ID at the emulator's time; an override of None removes the claim."""
    now = int(emulator.now())
    claims: dict[str, Any] = {
        "aud": emulator.issuer,
        "iss": CLIENT_ID,
        "scope": SCOPE,
        "iat": now,
        "exp": now + 60,
        "jti": str(uuid.uuid4()),
    }
    claims.update(overrides)
    return {name: value for name, value in claims.items() if value is not None}


def jose_grant(key: rsa.RSAPrivateKey, claims: dict[str, Any], *, algorithm: str = "RS256", **header: Any) -> str:
    """A grant signed with python-jose; ``header`` defaults to ``kid=KID``."""
    grant: str = jwt.encode(claims, key, algorithm=algorithm, headers=header or {"kid": KID})
    return grant


def hand_signed_grant(key: rsa.RSAPrivateKey, header: dict[str, Any], claims: dict[str, Any]) -> str:
    """A grant built by hand: any header at all, signed RS256 with ``cryptography``."""
    signing_input = ".".join(b64url(json.dumps(part).encode()) for part in (header, claims))
    signature = key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64url(signature)}"


_http: dict[str, httpx.Client] = {}


@pytest.fixture(scope="module", autouse=True)
def shared_http_client() -> Iterator[None]:
    """One keep-alive client for the module's token requests (a new httpx client per request is slow)."""
    with httpx.Client() as client:
        _http["client"] = client
        yield
    del _http["client"]


def post_grant(emulator: MaskinportenEmulator, assertion: str, **kwargs: Any) -> httpx.Response:
    form = {"grant_type": JWT_BEARER, "assertion": assertion}
    return _http["client"].post(emulator.url + "/token", data=form, **kwargs)


def assert_rejected(
    response: httpx.Response, status: int, error: str, code: str | None, description: str
) -> dict[str, Any]:
    """Check status, ``error``, the MP code in ``error_uri`` and the description (which ends with a trace id)."""
    body: dict[str, Any] = response.json()
    assert response.status_code == status, body
    assert body["error"] == error
    assert description in body["error_description"]
    assert body["error_description"].rsplit(" (trace_id: ", 1)[1].rstrip(")").isalnum()
    if code is None:
        assert "error_uri" not in body
    else:
        assert body["error_uri"].rsplit("/", 1)[1] == code
        assert body["error_uri"].startswith(response.request.url.join("/errors/").__str__())
    return body


def verify_access_token(emulator: MaskinportenEmulator, response: httpx.Response, **options: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body = response.json()
    claims: dict[str, Any] = jwt.decode(
        body["access_token"], emulator.jwks, algorithms=["RS256"], issuer=emulator.issuer, **options
    )
    return claims


@pytest.fixture
def emulator(maskinporten_emulator: MaskinportenEmulator, client_key: rsa.RSAPrivateKey) -> MaskinportenEmulator:
    """The plugin's emulator, with the supplier's integration registered under KID."""
    maskinporten_emulator.register_client(
        CLIENT_ID, orgno=SUPPLIER, scopes=[SCOPE], keys={KID: client_key.public_key()}
    )
    return maskinporten_emulator


@pytest.fixture
def grant(emulator: MaskinportenEmulator, client_key: rsa.RSAPrivateKey) -> Callable[..., str]:
    """Make a valid kid grant, with claim overrides."""

    def make(**overrides: Any) -> str:
        return jose_grant(client_key, claims_for(emulator, **overrides))

    return make


# Discovery


def test_metadata_document_has_exactly_the_documented_fields(emulator: MaskinportenEmulator) -> None:
    response = httpx.get(emulator.url + "/.well-known/oauth-authorization-server")
    assert response.status_code == 200
    assert response.json() == {
        "issuer": emulator.url + "/",
        "token_endpoint": emulator.url + "/token",
        "jwks_uri": emulator.url + "/jwk",
        "grant_types_supported": [JWT_BEARER],
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS256", "RS384", "RS512"],
        "authorization_details_types_supported": ["urn:altinn:systemuser", "urn:altinn:consent"],
    }


def test_jwk_endpoint_serves_the_jwks_with_kid_alg_use_and_x5c(emulator: MaskinportenEmulator) -> None:
    served = httpx.get(emulator.url + "/jwk").json()
    assert served == emulator.jwks
    (key,) = served["keys"]
    assert key["kty"] == "RSA" and key["alg"] == "RS256" and key["use"] == "sig" and key["kid"]
    certificate = x509.load_der_x509_certificate(base64.b64decode(key["x5c"][0]))
    assert rsa_public_jwk(certificate.public_key())["n"] == key["n"]  # type: ignore[arg-type]


def test_environment_points_at_the_emulator(emulator: MaskinportenEmulator) -> None:
    environment = emulator.environment
    assert emulator.url.startswith("http://127.0.0.1:")
    assert emulator.issuer == emulator.url + "/"
    assert environment.issuer == emulator.issuer
    assert environment.token_endpoint == emulator.url + "/token"
    assert environment.jwks_uri == emulator.url + "/jwk"


def test_unknown_path_is_404_and_get_token_is_405(emulator: MaskinportenEmulator) -> None:
    assert httpx.get(emulator.url + "/nothing").status_code == 404
    assert httpx.get(emulator.url + "/token").status_code == 405


# The success path


def test_valid_grant_gets_a_signed_access_token_with_every_documented_claim(
    emulator: MaskinportenEmulator, grant: Callable[..., str]
) -> None:
    before = int(time.time())
    response = post_grant(emulator, grant())
    claims = verify_access_token(emulator, response)
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 120 and body["scope"] == SCOPE
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
    assert jwt.get_unverified_header(body["access_token"])["kid"] == emulator.jwks["keys"][0]["kid"]
    assert set(claims) == {"iss", "client_id", "client_amr", "consumer", "scope", "token_type", "exp", "iat", "jti"}
    assert claims["iss"] == emulator.issuer
    assert claims["client_id"] == CLIENT_ID
    assert claims["client_amr"] == "private_key_jwt"
    assert claims["consumer"] == {"authority": "iso6523-actorid-upis", "ID": f"0192:{SUPPLIER}"}
    assert claims["scope"] == SCOPE and claims["token_type"] == "Bearer"
    assert before <= claims["iat"] <= time.time() and claims["exp"] - claims["iat"] == 120
    assert email.utils.parsedate_to_datetime(response.headers["Date"]).timestamp() == pytest.approx(time.time(), abs=2)


@pytest.mark.parametrize("algorithm", ["RS256", "RS384", "RS512"])
def test_every_rsa_algorithm_is_accepted(
    emulator: MaskinportenEmulator, client_key: rsa.RSAPrivateKey, algorithm: str
) -> None:
    response = post_grant(emulator, jose_grant(client_key, claims_for(emulator), algorithm=algorithm))
    assert verify_access_token(emulator, response)["client_id"] == CLIENT_ID


@pytest.mark.parametrize("form", ["pem", "jwk", "client_key"])
def test_keys_register_as_pem_jwk_or_expiring_client_key(
    maskinporten_emulator: MaskinportenEmulator, client_key: rsa.RSAPrivateKey, form: str
) -> None:
    key: Any = {
        "pem": public_pem(client_key),
        "jwk": rsa_public_jwk(client_key.public_key(), kid=KID),
        "client_key": ClientKey(
            client_key.public_key(), expires_at=datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(1)
        ),
    }[form]
    maskinporten_emulator.register_client(CLIENT_ID, orgno=SUPPLIER, scopes=SCOPE, keys={KID: key})
    response = post_grant(maskinporten_emulator, jose_grant(client_key, claims_for(maskinporten_emulator)))
    assert verify_access_token(maskinporten_emulator, response)["client_id"] == CLIENT_ID


def test_counters_and_grant_records(emulator: MaskinportenEmulator, grant: Callable[..., str]) -> None:
    post_grant(emulator, grant())
    post_grant(emulator, grant(scope="not:registered"))
    assert emulator.token_requests == 2 and emulator.tokens_issued == 1
    ok, refused = emulator.grants
    assert ok.header == {"alg": "RS256", "typ": "JWT", "kid": KID} and ok.claims is not None
    assert ok.status == 200 and ok.error is None and ok.code is None
    assert refused.status == 400 and refused.error == "invalid_scope" and refused.code == "MP-200"
    assert ok.jti != refused.jti and emulator.reused_jtis == []


def test_register_client_rejects_a_bad_orgno_and_a_non_rsa_key(maskinporten_emulator: MaskinportenEmulator) -> None:
    with pytest.raises(ValueError, match="orgno"):
        maskinporten_emulator.register_client("x", orgno="123456789", scopes=SCOPE)
    ec_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    ec_pem = ec_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(ValueError, match="RSA"):
        maskinporten_emulator.register_client("x", orgno=SUPPLIER, scopes=SCOPE, keys={"k": ec_pem})
    with pytest.raises(ValueError, match="consumer_org"):
        maskinporten_emulator.delegate("123456789", SUPPLIER, SCOPE)


# The HTTP request


def test_wrong_content_type_is_invalid_request(emulator: MaskinportenEmulator, grant: Callable[..., str]) -> None:
    response = httpx.post(emulator.url + "/token", json={"grant_type": JWT_BEARER, "assertion": grant()})
    assert_rejected(response, 400, "invalid_request", None, "Content-Type must be application/x-www-form-urlencoded")


def test_missing_grant_type_is_invalid_request(emulator: MaskinportenEmulator, grant: Callable[..., str]) -> None:
    response = httpx.post(emulator.url + "/token", data={"assertion": grant()})
    assert_rejected(response, 400, "invalid_request", None, "Missing parameter grant_type")


def test_wrong_grant_type_is_unsupported_grant_type(emulator: MaskinportenEmulator, grant: Callable[..., str]) -> None:
    response = httpx.post(emulator.url + "/token", data={"grant_type": "client_credentials", "assertion": grant()})
    assert_rejected(response, 400, "unsupported_grant_type", None, "Unsupported grant type 'client_credentials'")


def test_requests_refused_before_validation_are_recorded_with_their_jti(
    emulator: MaskinportenEmulator, grant: Callable[..., str]
) -> None:
    assertion = grant()
    _http["client"].post(emulator.url + "/token", data={"grant_type": "password", "assertion": assertion})
    (record,) = emulator.grants
    assert record.jti == jwt.get_unverified_claims(assertion)["jti"]
    assert (record.status, record.error, record.code) == (400, "unsupported_grant_type", None)


def test_missing_assertion_is_invalid_request(emulator: MaskinportenEmulator) -> None:
    response = httpx.post(emulator.url + "/token", data={"grant_type": JWT_BEARER})
    assert_rejected(response, 400, "invalid_request", None, "Missing parameter assertion")


def test_repeated_parameter_is_invalid_request(emulator: MaskinportenEmulator, grant: Callable[..., str]) -> None:
    response = httpx.post(emulator.url + "/token", data={"grant_type": JWT_BEARER, "assertion": [grant(), grant()]})
    assert_rejected(response, 400, "invalid_request", None, "repeated: assertion")


# Maskinporten's troubleshooting page documents MP-011 invalid_request for an assertion that is not a JWT (this test
# expected invalid_grant MP-100 before), and MP-124 for an empty signature part ("e30.e30." was one of these cases).
@pytest.mark.parametrize(
    "assertion", ["not-a-jwt", "a.b", "W10.e30.c2ln", "e30.e30.c2ln.x", "e30.e*.c2ln", ".e30.c2ln"]
)
def test_an_assertion_that_is_not_a_jwt_is_mp_011(emulator: MaskinportenEmulator, assertion: str) -> None:
    response = post_grant(emulator, assertion)
    assert_rejected(response, 400, "invalid_request", "MP-011", "Invalid assertion. Invalid parameter value")


@pytest.mark.parametrize("assertion", ["e30.e30.", "valid-but-unsigned"])
def test_an_empty_signature_is_mp_124(
    emulator: MaskinportenEmulator, grant: Callable[..., str], assertion: str
) -> None:
    if assertion == "valid-but-unsigned":
        assertion = grant().rsplit(".", 1)[0] + "."
    assert_rejected(post_grant(emulator, assertion), 400, "invalid_grant", "MP-124", "Invalid JWT signature")


# The header


@pytest.mark.parametrize("algorithm", ["HS256", "PS256", "ES256", "none", None])
def test_non_rs_algorithm_is_rejected(
    emulator: MaskinportenEmulator, client_key: rsa.RSAPrivateKey, algorithm: str | None
) -> None:
    header = {"kid": KID} if algorithm is None else {"alg": algorithm, "kid": KID}
    response = post_grant(emulator, hand_signed_grant(client_key, header, claims_for(emulator)))
    assert_rejected(response, 400, "invalid_grant", None, f"Unsupported JWT alg {algorithm!r}")


@pytest.mark.parametrize("both", [True, False], ids=["kid-and-x5c", "neither"])
def test_header_needs_exactly_one_of_kid_and_x5c(
    emulator: MaskinportenEmulator, client_key: rsa.RSAPrivateKey, leaf: x509.Certificate, both: bool
) -> None:
    header = {"alg": "RS256", "kid": KID, "x5c": [der_b64(leaf)]} if both else {"alg": "RS256"}
    response = post_grant(emulator, hand_signed_grant(client_key, header, claims_for(emulator)))
    assert_rejected(response, 400, "invalid_grant", None, "exactly one of kid and x5c")


@pytest.mark.parametrize("crit", [["exp"], ["urn:example:extension"], []])
def test_a_crit_header_is_rejected(emulator: MaskinportenEmulator, client_key: rsa.RSAPrivateKey, crit: Any) -> None:
    header = {"alg": "RS256", "kid": KID, "crit": crit, "urn:example:extension": True}
    response = post_grant(emulator, hand_signed_grant(client_key, header, claims_for(emulator)))
    assert_rejected(response, 400, "invalid_grant", None, "crit names extensions Maskinporten does not understand")


def test_x5c_as_a_string_is_mp_123(
    emulator: MaskinportenEmulator, client_key: rsa.RSAPrivateKey, leaf: x509.Certificate
) -> None:
    response = post_grant(emulator, jose_grant(client_key, claims_for(emulator), x5c=der_b64(leaf)))
    assert_rejected(response, 400, "invalid_grant", "MP-123", "Invalid JWT header x5c")


@pytest.mark.parametrize("x5c", [[], ["not base64!"], [base64.b64encode(b"not DER").decode()]], ids=str)
def test_x5c_without_a_certificate_is_mp_123(
    emulator: MaskinportenEmulator, client_key: rsa.RSAPrivateKey, x5c: list[str]
) -> None:
    response = post_grant(emulator, jose_grant(client_key, claims_for(emulator), x5c=x5c))
    assert_rejected(response, 400, "invalid_grant", "MP-123", "Invalid JWT header x5c")


# Certificates (virksomhetssertifikat)


@pytest.fixture
def certificate_client(
    maskinporten_emulator: MaskinportenEmulator, ca: tuple[x509.Certificate, rsa.RSAPrivateKey]
) -> MaskinportenEmulator:
    """The emulator with the supplier's integration trusting the CA (PEM) for x5c grants, and no kid."""
    pem = ca[0].public_bytes(serialization.Encoding.PEM)
    maskinporten_emulator.register_client(CLIENT_ID, orgno=SUPPLIER, scopes=SCOPE, certificates=[pem])
    return maskinporten_emulator


@pytest.mark.parametrize("full_chain", [True, False], ids=["leaf-and-ca", "leaf-only"])
def test_x5c_chain_to_a_registered_ca_is_accepted_as_virksomhetssertifikat(
    certificate_client: MaskinportenEmulator,
    client_key: rsa.RSAPrivateKey,
    leaf: x509.Certificate,
    ca: tuple[x509.Certificate, rsa.RSAPrivateKey],
    full_chain: bool,
) -> None:
    x5c = [der_b64(leaf), der_b64(ca[0])] if full_chain else [der_b64(leaf)]
    response = post_grant(certificate_client, jose_grant(client_key, claims_for(certificate_client), x5c=x5c))
    assert verify_access_token(certificate_client, response)["client_amr"] == "virksomhetssertifikat"


def test_x5c_with_a_registered_leaf_certificate_is_accepted(
    maskinporten_emulator: MaskinportenEmulator, client_key: rsa.RSAPrivateKey, leaf: x509.Certificate
) -> None:
    maskinporten_emulator.register_client(CLIENT_ID, orgno=SUPPLIER, scopes=SCOPE, certificates=[leaf])
    response = post_grant(
        maskinporten_emulator, jose_grant(client_key, claims_for(maskinporten_emulator), x5c=[der_b64(leaf)])
    )
    assert verify_access_token(maskinporten_emulator, response)["client_amr"] == "virksomhetssertifikat"


def test_x5c_from_an_untrusted_ca_is_mp_120(
    certificate_client: MaskinportenEmulator, client_key: rsa.RSAPrivateKey, stranger_key: rsa.RSAPrivateKey
) -> None:
    rogue_ca = make_certificate(stranger_key, "Rogue CA", ca=True)
    rogue_leaf = make_certificate(client_key, "REGNSKAP AS", issuer=(rogue_ca, stranger_key))
    x5c = [der_b64(rogue_leaf), der_b64(rogue_ca)]
    response = post_grant(certificate_client, jose_grant(client_key, claims_for(certificate_client), x5c=x5c))
    assert_rejected(response, 400, "invalid_grant", "MP-120", "invalid certificate")


def test_x5c_whose_chain_is_broken_is_mp_120(
    certificate_client: MaskinportenEmulator,
    client_key: rsa.RSAPrivateKey,
    leaf: x509.Certificate,
    ca: tuple[x509.Certificate, rsa.RSAPrivateKey],
    stranger_key: rsa.RSAPrivateKey,
) -> None:
    unrelated = make_certificate(stranger_key, "Unrelated CA", ca=True)
    x5c = [der_b64(leaf), der_b64(unrelated), der_b64(ca[0])]
    response = post_grant(certificate_client, jose_grant(client_key, claims_for(certificate_client), x5c=x5c))
    assert_rejected(response, 400, "invalid_grant", "MP-120", "is not issued by certificate 1")


def test_x5c_trusted_only_for_another_client_is_mp_120(
    certificate_client: MaskinportenEmulator, client_key: rsa.RSAPrivateKey, leaf: x509.Certificate
) -> None:
    certificate_client.register_client("other-client", orgno=CUSTOMER, scopes=SCOPE, keys={KID: public_pem(client_key)})
    claims = claims_for(certificate_client, iss="other-client")
    response = post_grant(certificate_client, jose_grant(client_key, claims, x5c=[der_b64(leaf)]))
    assert_rejected(response, 400, "invalid_grant", "MP-120", "not one registered for this client")


def test_x5c_through_an_issuer_that_is_not_a_ca_is_mp_120(
    certificate_client: MaskinportenEmulator,
    client_key: rsa.RSAPrivateKey,
    ca: tuple[x509.Certificate, rsa.RSAPrivateKey],
    stranger_key: rsa.RSAPrivateKey,
) -> None:
    """Full path validation: an end-entity certificate of the trusted CA cannot issue certificates itself."""
    not_a_ca = make_certificate(stranger_key, "Some End Entity", issuer=ca)
    leaf_of_it = make_certificate(client_key, "REGNSKAP AS", issuer=(not_a_ca, stranger_key))
    x5c = [der_b64(leaf_of_it), der_b64(not_a_ca), der_b64(ca[0])]
    response = post_grant(certificate_client, jose_grant(client_key, claims_for(certificate_client), x5c=x5c))
    assert_rejected(response, 400, "invalid_grant", "MP-120", "invalid certificate")


@pytest.mark.parametrize(
    "attribute",
    [
        x509.NameAttribute(NameOID.ORGANIZATION_IDENTIFIER, f"NTRNO-{CUSTOMER}"),
        x509.NameAttribute(NameOID.SERIAL_NUMBER, CUSTOMER),
    ],
    ids=["organizationIdentifier", "serialNumber"],
)
def test_x5c_issued_to_another_organisation_is_mp_122(
    certificate_client: MaskinportenEmulator,
    client_key: rsa.RSAPrivateKey,
    ca: tuple[x509.Certificate, rsa.RSAPrivateKey],
    attribute: x509.NameAttribute,
) -> None:
    their_leaf = make_certificate(client_key, "BAKER AS", issuer=ca, subject_attributes=(attribute,))
    x5c = [der_b64(their_leaf), der_b64(ca[0])]
    response = post_grant(certificate_client, jose_grant(client_key, claims_for(certificate_client), x5c=x5c))
    assert_rejected(response, 400, "invalid_grant", "MP-122", "Does not match certificate orgno")


def test_x5c_issued_to_the_clients_own_organisation_is_accepted(
    certificate_client: MaskinportenEmulator,
    client_key: rsa.RSAPrivateKey,
    ca: tuple[x509.Certificate, rsa.RSAPrivateKey],
) -> None:
    attribute = x509.NameAttribute(NameOID.ORGANIZATION_IDENTIFIER, f"NTRNO-{SUPPLIER}")
    own_leaf = make_certificate(client_key, "REGNSKAP AS", issuer=ca, subject_attributes=(attribute,))
    x5c = [der_b64(own_leaf), der_b64(ca[0])]
    response = post_grant(certificate_client, jose_grant(client_key, claims_for(certificate_client), x5c=x5c))
    assert verify_access_token(certificate_client, response)["client_amr"] == "virksomhetssertifikat"


def test_x5c_with_an_expired_certificate_is_mp_121(
    certificate_client: MaskinportenEmulator,
    client_key: rsa.RSAPrivateKey,
    ca: tuple[x509.Certificate, rsa.RSAPrivateKey],
) -> None:
    expired_leaf = make_certificate(client_key, "REGNSKAP AS", issuer=ca, expired=True)
    x5c = [der_b64(expired_leaf)]
    response = post_grant(certificate_client, jose_grant(client_key, claims_for(certificate_client), x5c=x5c))
    assert_rejected(response, 400, "invalid_grant", "MP-121", "Expired key")


# Client and key


def test_unknown_client_is_mp_100(emulator: MaskinportenEmulator, grant: Callable[..., str]) -> None:
    response = post_grant(emulator, grant(iss="no-such-client"))
    assert_rejected(response, 400, "invalid_grant", "MP-100", "Invalid assertion. Client authentication failed.")
    assert "Client not found" in response.json()["error_description"]


def test_unknown_kid_is_invalid_grant_without_mp_code(
    emulator: MaskinportenEmulator, client_key: rsa.RSAPrivateKey
) -> None:
    response = post_grant(emulator, jose_grant(client_key, claims_for(emulator), kid="rotated-away"))
    body = assert_rejected(response, 400, "invalid_grant", None, "Unknown key identifier (kid) for client.")
    assert body["error_description"].startswith("Unknown key identifier (kid) for client. (trace_id: ")


def test_expired_key_is_mp_121(maskinporten_emulator: MaskinportenEmulator, client_key: rsa.RSAPrivateKey) -> None:
    yesterday = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1)
    expired = ClientKey(client_key.public_key(), expires_at=yesterday)
    maskinporten_emulator.register_client(CLIENT_ID, orgno=SUPPLIER, scopes=SCOPE, keys={KID: expired})
    response = post_grant(maskinporten_emulator, jose_grant(client_key, claims_for(maskinporten_emulator)))
    assert_rejected(
        response, 400, "invalid_grant", "MP-121", "Invalid assertion. Client authentication failed. Expired key."
    )


def test_signature_by_another_key_is_mp_124(emulator: MaskinportenEmulator, stranger_key: rsa.RSAPrivateKey) -> None:
    response = post_grant(emulator, jose_grant(stranger_key, claims_for(emulator)))
    assert_rejected(response, 400, "invalid_grant", "MP-124", "Invalid JWT signature")


def test_tampered_claims_are_mp_124(emulator: MaskinportenEmulator, grant: Callable[..., str]) -> None:
    header, _, signature = grant().split(".")
    forged = b64url(json.dumps(claims_for(emulator, scope="other:scope")).encode())
    assert_rejected(post_grant(emulator, f"{header}.{forged}.{signature}"), 400, "invalid_grant", "MP-124", "signature")


# Claims


@pytest.mark.parametrize(
    "audience",
    ["{url}/token", "{url}", "https://test.maskinporten.no/", ["{url}/"], None],
    ids=["token-endpoint", "no-trailing-slash", "other-issuer", "array", "missing"],
)
def test_aud_other_than_the_issuer_string_is_mp_110(
    emulator: MaskinportenEmulator, grant: Callable[..., str], audience: Any
) -> None:
    if isinstance(audience, str):
        audience = audience.format(url=emulator.url)
    elif isinstance(audience, list):
        audience = [audience[0].format(url=emulator.url)]
    response = post_grant(emulator, grant(aud=audience))
    assert_rejected(response, 400, "invalid_grant", "MP-110", "Invalid JWT claim aud")


def test_grant_living_longer_than_120_seconds_is_rejected(
    emulator: MaskinportenEmulator, grant: Callable[..., str]
) -> None:
    now = int(emulator.now())
    response = post_grant(emulator, grant(iat=now, exp=now + 121))
    assert_rejected(response, 400, "invalid_grant", None, "exp - iat is 121 s")
    assert post_grant(emulator, grant(iat=now, exp=now + 120)).status_code == 200


@pytest.mark.parametrize("claim", ["iat", "exp"])
def test_missing_time_claim_is_rejected(emulator: MaskinportenEmulator, grant: Callable[..., str], claim: str) -> None:
    response = post_grant(emulator, grant(**{claim: None}))
    assert_rejected(response, 400, "invalid_grant", None, f"claim {claim} is missing or not a number")


def test_iat_beyond_ten_seconds_ahead_is_mp_130_issue_time_after_now(
    emulator: MaskinportenEmulator, grant: Callable[..., str]
) -> None:
    now = int(emulator.now())
    response = post_grant(emulator, grant(iat=now + 15, exp=now + 75))
    assert_rejected(response, 400, "invalid_grant", "MP-130", "Issue time is after now")


def test_iat_within_ten_seconds_is_accepted(emulator: MaskinportenEmulator, grant: Callable[..., str]) -> None:
    now = int(emulator.now())
    assert post_grant(emulator, grant(iat=now + 8, exp=now + 68)).status_code == 200
    assert post_grant(emulator, grant(iat=now - 8, exp=now + 52)).status_code == 200


def test_expired_grant_is_mp_130_jwt_is_expired(emulator: MaskinportenEmulator, grant: Callable[..., str]) -> None:
    now = int(emulator.now())
    response = post_grant(emulator, grant(iat=now - 70, exp=now - 5))
    body = assert_rejected(response, 400, "invalid_grant", "MP-130", "JWT is expired")
    assert "Issue time is after now" not in body["error_description"]


def test_grant_issued_more_than_ten_seconds_ago_is_mp_130_jwt_is_expired(
    emulator: MaskinportenEmulator, grant: Callable[..., str]
) -> None:
    now = int(emulator.now())
    response = post_grant(emulator, grant(iat=now - 30, exp=now + 60))
    assert_rejected(response, 400, "invalid_grant", "MP-130", "JWT is expired")


def test_reused_jti_is_mp_012_and_reported(emulator: MaskinportenEmulator, grant: Callable[..., str]) -> None:
    assertion = grant()
    assert post_grant(emulator, assertion).status_code == 200
    response = post_grant(emulator, assertion)
    assert_rejected(response, 400, "invalid_grant", "MP-012", "Grant is used before")
    assert emulator.reused_jtis == [jwt.get_unverified_claims(assertion)["jti"]]
    assert emulator.tokens_issued == 1


def test_grant_without_jti_is_accepted(emulator: MaskinportenEmulator, grant: Callable[..., str]) -> None:
    assert post_grant(emulator, grant(jti=None)).status_code == 200
    assert post_grant(emulator, grant(jti=None)).status_code == 200
    assert emulator.reused_jtis == []


def test_unknown_claim_is_invalid_assertion_naming_it(
    emulator: MaskinportenEmulator, grant: Callable[..., str]
) -> None:
    response = post_grant(emulator, grant(sub=CLIENT_ID, nbf=int(time.time())))
    body = assert_rejected(response, 400, "invalid_grant", None, "Invalid assertion")
    assert "nbf, sub" in body["error_description"]


@pytest.mark.parametrize("consumer_org", ["123456789", "0192:310539759", 310539759])
def test_consumer_org_must_be_an_orgno(
    emulator: MaskinportenEmulator, grant: Callable[..., str], consumer_org: Any
) -> None:
    response = post_grant(emulator, grant(consumer_org=consumer_org))
    assert_rejected(response, 400, "invalid_grant", None, "is not a nine-digit organisation number")


def test_consumer_org_with_iss_onbehalfof_is_rejected(
    emulator: MaskinportenEmulator, grant: Callable[..., str]
) -> None:
    emulator.delegate(CUSTOMER, SUPPLIER, SCOPE)
    response = post_grant(emulator, grant(consumer_org=CUSTOMER, iss_onbehalfof="legacy"))
    assert_rejected(response, 400, "invalid_grant", None, "consumer_org cannot be combined with iss_onbehalfof")


@pytest.mark.parametrize("scope", [f"{SCOPE} not:registered", "not:registered", "", None, ["list:scope"]])
def test_scope_not_registered_or_missing_is_mp_200(
    emulator: MaskinportenEmulator, grant: Callable[..., str], scope: Any
) -> None:
    response = post_grant(emulator, grant(scope=scope))
    assert_rejected(response, 400, "invalid_scope", "MP-200", "Token request contains invalid scopes for client")


def test_checks_run_in_maskinportens_order(
    emulator: MaskinportenEmulator, client_key: rsa.RSAPrivateKey, stranger_key: rsa.RSAPrivateKey
) -> None:
    now = int(emulator.now())
    everything_wrong: dict[str, Any] = {"aud": "x", "iat": now - 500, "exp": now + 500, "extra": 1, "scope": "bad"}
    expectations: list[tuple[rsa.RSAPrivateKey, dict[str, Any], str | None]] = [
        (stranger_key, {}, "MP-124"),  # the signature before any claim
        (client_key, {}, "MP-110"),  # aud before time
        (client_key, {"aud": emulator.issuer}, None),  # lifetime before the clock
        (client_key, {"aud": emulator.issuer, "exp": now - 480}, "MP-130"),
        (client_key, {"aud": emulator.issuer, "iat": now, "exp": now + 60}, None),  # unknown claim before scope
        (client_key, {"aud": emulator.issuer, "iat": now, "exp": now + 60, "extra": None}, "MP-200"),
    ]
    for key, fixes, code in expectations:
        response = post_grant(emulator, jose_grant(key, claims_for(emulator, **{**everything_wrong, **fixes})))
        assert response.status_code == 400 and (response.json().get("error_uri") or "/None").endswith(str(code))


# Delegation, resource, pid, system users


def test_delegated_grant_gets_consumer_supplier_and_delegation_source(
    emulator: MaskinportenEmulator, grant: Callable[..., str]
) -> None:
    emulator.delegate(CUSTOMER, SUPPLIER, SCOPE)
    claims = verify_access_token(emulator, post_grant(emulator, grant(consumer_org=CUSTOMER)))
    assert claims["consumer"] == {"authority": "iso6523-actorid-upis", "ID": f"0192:{CUSTOMER}"}
    assert claims["supplier"] == {"authority": "iso6523-actorid-upis", "ID": f"0192:{SUPPLIER}"}
    assert claims["delegation_source"] == "https://tt02.altinn.no"


def test_consumer_without_delegation_is_mp_251_forbidden(
    emulator: MaskinportenEmulator, grant: Callable[..., str]
) -> None:
    emulator.delegate(CUSTOMER, SUPPLIER, SCOPE)
    response = post_grant(emulator, grant(consumer_org=OTHER_CUSTOMER))
    expected = f"Consumer {OTHER_CUSTOMER} has not delegated access to the scope {SCOPE} to supplier {SUPPLIER}."
    assert_rejected(response, 403, "forbidden", "MP-251", expected)


def test_scope_delegated_but_not_registered_on_the_client_is_accepted(
    emulator: MaskinportenEmulator, grant: Callable[..., str]
) -> None:
    emulator.delegate(CUSTOMER, SUPPLIER, ALTINN_SCOPE)
    claims = verify_access_token(emulator, post_grant(emulator, grant(consumer_org=CUSTOMER, scope=ALTINN_SCOPE)))
    assert claims["scope"] == ALTINN_SCOPE and claims["consumer"]["ID"] == f"0192:{CUSTOMER}"


def test_unknown_scope_with_consumer_org_is_mp_200_not_mp_251(
    emulator: MaskinportenEmulator, grant: Callable[..., str]
) -> None:
    response = post_grant(emulator, grant(consumer_org=CUSTOMER, scope="not:registered"))
    assert_rejected(response, 400, "invalid_scope", "MP-200", "not:registered")


# The troubleshooting page documents this refusal; the emulator accepted it before (as needing no delegation).
def test_consumer_org_of_the_client_itself_is_refused(
    emulator: MaskinportenEmulator, grant: Callable[..., str]
) -> None:
    response = post_grant(emulator, grant(consumer_org=SUPPLIER))
    assert_rejected(
        response, 400, "invalid_request", None, "Det er samme organisasjonsnummer både på klient og i consumer_org"
    )


@pytest.mark.parametrize(
    ("resource", "audience"),
    [
        (["https://api.nav.no/"], "https://api.nav.no/"),
        (["https://a.example/", "https://b.example/"], ["https://a.example/", "https://b.example/"]),
    ],
    ids=["array-of-one", "array-of-two"],
)
def test_resource_becomes_the_token_audience(
    emulator: MaskinportenEmulator, grant: Callable[..., str], resource: Any, audience: Any
) -> None:
    response = post_grant(emulator, grant(resource=resource))
    first = audience if isinstance(audience, str) else audience[0]
    assert verify_access_token(emulator, response, audience=first)["aud"] == audience


# Digdir on resource: "Currently only array supported": a plain string (accepted before) is refused too.
@pytest.mark.parametrize("resource", [5, [], [5], "https://api.nav.no/"])
def test_resource_of_the_wrong_type_is_rejected(
    emulator: MaskinportenEmulator, grant: Callable[..., str], resource: Any
) -> None:
    assert_rejected(post_grant(emulator, grant(resource=resource)), 400, "invalid_grant", None, "resource must be")


def test_pid_is_echoed_and_must_be_eleven_digits(emulator: MaskinportenEmulator, grant: Callable[..., str]) -> None:
    assert verify_access_token(emulator, post_grant(emulator, grant(pid="01017012345")))["pid"] == "01017012345"
    assert_rejected(post_grant(emulator, grant(pid="0101")), 400, "invalid_grant", None, "pid must be")


def test_systemuser_authorization_details_are_echoed_with_ids(
    emulator: MaskinportenEmulator, grant: Callable[..., str]
) -> None:
    detail = {
        "type": "urn:altinn:systemuser",
        "systemuser_org": {"authority": "iso6523-actorid-upis", "id": f"0192:{CUSTOMER}"},
        "externalRef": "ref-1",
    }
    systemuser_id = emulator.add_systemuser(CUSTOMER, CLIENT_ID, system_id=f"{SUPPLIER}_lonn", external_ref="ref-1")
    claims = verify_access_token(emulator, post_grant(emulator, grant(authorization_details=[detail])))
    (echoed,) = claims["authorization_details"]
    assert {name: echoed[name] for name in detail} == detail
    assert echoed["systemuser_id"] == [systemuser_id]
    assert str(uuid.UUID(systemuser_id)) == systemuser_id
    assert echoed["system_id"] == f"{SUPPLIER}_lonn"
    assert claims["consumer"]["ID"] == f"0192:{SUPPLIER}"  # the vendor


SYSTEMUSER_ORG = {"authority": "iso6523-actorid-upis", "ID": f"0192:{CUSTOMER}"}


# The troubleshooting page gives these MP codes (MP-301 unknown type, MP-302 unknown fields, MP-303 invalid
# values); the emulator answered them without a code before.
@pytest.mark.parametrize(
    ("details", "code"),
    [
        ({"type": "urn:altinn:systemuser"}, "MP-303"),
        ([], "MP-303"),
        (["urn:altinn:systemuser"], "MP-303"),
        ([{"type": "urn:other"}], "MP-301"),
        ([{"systemuser_org": SYSTEMUSER_ORG}], "MP-301"),
        ([{"type": ["urn:altinn:systemuser"], "systemuser_org": SYSTEMUSER_ORG}], "MP-301"),
        ([{"type": "urn:altinn:systemuser", "systemuser_org": SYSTEMUSER_ORG, "scope": "x"}], "MP-302"),
        ([{"type": "urn:altinn:consent", "id": str(uuid.uuid4()), "systemuser_org": SYSTEMUSER_ORG}], "MP-302"),
        ([{"type": "urn:altinn:systemuser", "systemuser_org": {"authority": "x", "ID": f"0192:{CUSTOMER}"}}], "MP-303"),
        ([{"type": "urn:altinn:systemuser", "systemuser_org": {**SYSTEMUSER_ORG, "ID": CUSTOMER}}], "MP-303"),
        ([{"type": "urn:altinn:systemuser", "systemuser_org": {**SYSTEMUSER_ORG, "ID": "0192:123456789"}}], "MP-303"),
        ([{"type": "urn:altinn:systemuser", "systemuser_org": f"0192:{CUSTOMER}"}], "MP-303"),
        ([{"type": "urn:altinn:systemuser", "systemuser_org": SYSTEMUSER_ORG, "externalRef": 7}], "MP-303"),
        ([{"type": "urn:altinn:systemuser", "systemuser_org": SYSTEMUSER_ORG}] * 2, "MP-303"),
    ],
    ids=[
        "object",
        "empty",
        "string-entry",
        "unknown-type",
        "no-type",
        "type-not-a-string",
        "unknown-field",
        "field-of-another-type",
        "bad-authority",
        "no-prefix",
        "bad-check-digit",
        "party-as-string",
        "external-ref-number",
        "two-system-users",
    ],
)
def test_invalid_authorization_details_are_rejected(
    emulator: MaskinportenEmulator, grant: Callable[..., str], details: Any, code: str
) -> None:
    response = post_grant(emulator, grant(authorization_details=details))
    assert_rejected(response, 400, "invalid_authorization_details", code, "Invalid authorization_details")


# Clock and lifetimes


def test_clock_offset_shifts_validation_token_times_and_date_header(
    maskinporten_emulator: MaskinportenEmulator, client_key: rsa.RSAPrivateKey
) -> None:
    maskinporten_emulator.register_client(CLIENT_ID, orgno=SUPPLIER, scopes=SCOPE, keys={KID: client_key.public_key()})
    real_now = int(time.time())
    real_time_claims = claims_for(maskinporten_emulator, iat=real_now, exp=real_now + 60)
    maskinporten_emulator.clock_offset = 300
    response = post_grant(maskinporten_emulator, jose_grant(client_key, real_time_claims))
    assert_rejected(response, 400, "invalid_grant", "MP-130", "JWT is expired")
    server_date = email.utils.parsedate_to_datetime(response.headers["Date"]).timestamp()
    assert server_date == pytest.approx(time.time() + 300, abs=2)
    maskinporten_emulator.clock_offset = -300
    response = post_grant(
        maskinporten_emulator,
        jose_grant(client_key, claims_for(maskinporten_emulator, iat=real_now, exp=real_now + 60)),
    )
    assert_rejected(response, 400, "invalid_grant", "MP-130", "Issue time is after now")
    response = post_grant(maskinporten_emulator, jose_grant(client_key, claims_for(maskinporten_emulator)))
    claims = verify_access_token(maskinporten_emulator, response, options={"verify_exp": False, "verify_iat": False})
    assert claims["iat"] == pytest.approx(time.time() - 300, abs=2)


def test_token_lifetime_is_configurable(client_key: rsa.RSAPrivateKey) -> None:
    with MaskinportenEmulator(token_lifetime=300) as emulator:
        emulator.register_client(CLIENT_ID, orgno=SUPPLIER, scopes=SCOPE, keys={KID: client_key.public_key()})
        response = post_grant(emulator, jose_grant(client_key, claims_for(emulator)))
        claims = verify_access_token(emulator, response)
    assert response.json()["expires_in"] == 300 and claims["exp"] - claims["iat"] == 300


def test_scope_lifetime_overrides_the_default_and_several_scopes_take_the_shortest(
    emulator: MaskinportenEmulator, client_key: rsa.RSAPrivateKey
) -> None:
    emulator.register_client(
        CLIENT_ID, orgno=SUPPLIER, scopes=[SCOPE, ALTINN_SCOPE], keys={KID: client_key.public_key()}
    )
    emulator.set_scope_lifetime(ALTINN_SCOPE, 3600)
    altinn = post_grant(emulator, jose_grant(client_key, claims_for(emulator, scope=ALTINN_SCOPE)))
    assert altinn.json()["expires_in"] == 3600
    claims = verify_access_token(emulator, altinn)
    assert claims["exp"] - claims["iat"] == 3600
    both = post_grant(emulator, jose_grant(client_key, claims_for(emulator, scope=f"{ALTINN_SCOPE} {SCOPE}")))
    assert both.json()["expires_in"] == 120


# Faults


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_error_fault_answers_the_status_with_a_json_error(
    emulator: MaskinportenEmulator, grant: Callable[..., str], status: int
) -> None:
    emulator.inject_fault(Fault.server_error(status))
    response = post_grant(emulator, grant())
    assert response.status_code == status and response.json()["error"] == "server_error"
    assert "Date" in response.headers and emulator.tokens_issued == 0


@pytest.mark.parametrize("retry_after", [None, 2, "Wed, 21 Oct 2026 07:28:00 GMT"])
def test_rate_limited_fault_is_429_with_optional_retry_after(
    emulator: MaskinportenEmulator, grant: Callable[..., str], retry_after: int | str | None
) -> None:
    emulator.inject_fault(Fault.rate_limited(retry_after=retry_after))
    response = post_grant(emulator, grant())
    assert response.status_code == 429
    assert response.headers.get("Retry-After") == (None if retry_after is None else str(retry_after))


def test_server_error_fault_can_carry_retry_after(emulator: MaskinportenEmulator, grant: Callable[..., str]) -> None:
    emulator.inject_fault(Fault.server_error(503, retry_after=1))
    response = post_grant(emulator, grant())
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"


def test_fault_applies_times_then_requests_succeed(emulator: MaskinportenEmulator, grant: Callable[..., str]) -> None:
    emulator.inject_fault(status=503, times=2)
    emulator.inject_fault(Fault.rate_limited())
    statuses = [post_grant(emulator, grant()).status_code for _ in range(4)]
    assert statuses == [503, 503, 429, 200]
    assert [record.fault is not None for record in emulator.grants] == [True, True, True, False]


def test_faulted_requests_are_recorded_with_their_jti(
    emulator: MaskinportenEmulator, grant: Callable[..., str]
) -> None:
    emulator.inject_fault(Fault.server_error(), times=2)
    assertions = [grant() for _ in range(3)]
    for assertion in assertions:
        post_grant(emulator, assertion)
    sent = [jwt.get_unverified_claims(assertion)["jti"] for assertion in assertions]
    assert [record.jti for record in emulator.grants] == sent
    assert emulator.token_requests == 3 and emulator.tokens_issued == 1 and emulator.reused_jtis == []


def test_resending_a_faulted_grant_is_caught_as_a_reused_jti(
    emulator: MaskinportenEmulator, grant: Callable[..., str]
) -> None:
    emulator.inject_fault(Fault.server_error())
    assertion = grant()
    assert post_grant(emulator, assertion).status_code == 500
    assert_rejected(post_grant(emulator, assertion), 400, "invalid_grant", "MP-012", "Grant is used before")
    assert emulator.reused_jtis == [jwt.get_unverified_claims(assertion)["jti"]]


def test_slow_fault_delays_a_normal_answer(emulator: MaskinportenEmulator, grant: Callable[..., str]) -> None:
    emulator.inject_fault(Fault.slow(0.5))
    started = time.monotonic()
    response = post_grant(emulator, grant())
    assert time.monotonic() - started >= 0.5
    assert verify_access_token(emulator, response)["client_id"] == CLIENT_ID


def test_delay_beyond_the_client_timeout_is_a_read_timeout_and_stop_does_not_wait_for_it(
    client_key: rsa.RSAPrivateKey,
) -> None:
    emulator = MaskinportenEmulator().start()
    emulator.register_client(CLIENT_ID, orgno=SUPPLIER, scopes=SCOPE, keys={KID: client_key.public_key()})
    emulator.inject_fault(delay=60)
    with pytest.raises(httpx.ReadTimeout):
        post_grant(emulator, jose_grant(client_key, claims_for(emulator)), timeout=0.3)
    started = time.monotonic()
    emulator.stop()
    assert time.monotonic() - started < 5
    assert emulator.grants[0].status is None and emulator.grants[0].jti is not None


def test_dropped_connection_fault_closes_without_an_answer(
    emulator: MaskinportenEmulator, grant: Callable[..., str]
) -> None:
    emulator.inject_fault(Fault.dropped_connection())
    with pytest.raises(httpx.RemoteProtocolError):
        post_grant(emulator, grant())
    assert emulator.grants[0].status is None and emulator.grants[0].jti is not None
    assert post_grant(emulator, grant()).status_code == 200


def test_reset_connection_fault_aborts_the_connection(
    emulator: MaskinportenEmulator, grant: Callable[..., str]
) -> None:
    emulator.inject_fault(Fault.reset_connection())
    with pytest.raises(httpx.ReadError, match="reset"):
        post_grant(emulator, grant())
    assert post_grant(emulator, grant()).status_code == 200


def test_malformed_json_fault_sends_a_cut_off_json_body(
    emulator: MaskinportenEmulator, grant: Callable[..., str]
) -> None:
    emulator.inject_fault(Fault.malformed_json())
    response = post_grant(emulator, grant())
    assert response.status_code == 200 and response.headers["Content-Type"] == "application/json"
    with pytest.raises(json.JSONDecodeError):
        response.json()


def test_html_error_page_fault(emulator: MaskinportenEmulator, grant: Callable[..., str]) -> None:
    emulator.inject_fault(Fault.html_error_page())
    response = post_grant(emulator, grant())
    assert response.status_code == 502 and response.headers["Content-Type"].startswith("text/html")
    assert response.text.startswith("<!DOCTYPE html>")


def test_missing_access_token_fault_is_a_200_without_the_token(
    emulator: MaskinportenEmulator, grant: Callable[..., str]
) -> None:
    emulator.inject_fault(Fault.missing_access_token())
    response = post_grant(emulator, grant())
    assert response.status_code == 200 and "access_token" not in response.json()


@pytest.mark.parametrize("expires_in", ["soon", -5, None, 0])
def test_invalid_expires_in_fault(emulator: MaskinportenEmulator, grant: Callable[..., str], expires_in: Any) -> None:
    emulator.inject_fault(Fault.invalid_expires_in(expires_in))
    body = post_grant(emulator, grant()).json()
    assert body["access_token"] and body["expires_in"] == expires_in


def test_custom_fault_from_keywords(emulator: MaskinportenEmulator, grant: Callable[..., str]) -> None:
    emulator.inject_fault(status=418, body="teapot", content_type="text/plain", headers={"X-Fault": "yes"})
    response = post_grant(emulator, grant())
    assert (response.status_code, response.text, response.headers["X-Fault"]) == (418, "teapot", "yes")


def test_fault_headers_without_status_decorate_the_normal_answer(
    emulator: MaskinportenEmulator, grant: Callable[..., str]
) -> None:
    skewed = "Mon, 01 Jan 2029 00:00:00 GMT"
    emulator.inject_fault(headers={"Date": skewed})
    response = post_grant(emulator, grant())
    assert response.headers["Date"] == skewed
    assert verify_access_token(emulator, response)["client_id"] == CLIENT_ID


def test_keywords_override_a_preset_fault(emulator: MaskinportenEmulator, grant: Callable[..., str]) -> None:
    queued = emulator.inject_fault(Fault.rate_limited(retry_after=1), delay=0.2)
    assert queued.status == 429 and queued.delay == 0.2
    started = time.monotonic()
    assert post_grant(emulator, grant()).status_code == 429
    assert time.monotonic() - started >= 0.2


def test_clear_faults(emulator: MaskinportenEmulator, grant: Callable[..., str]) -> None:
    emulator.inject_fault(status=500, times=5)
    emulator.clear_faults()
    assert post_grant(emulator, grant()).status_code == 200


@pytest.mark.parametrize(
    "fields",
    [{"drop": True, "reset": True}, {"drop": True, "status": 500}, {"body": "x"}, {"delay": -1}],
    ids=["drop-and-reset", "drop-with-status", "body-without-status", "negative-delay"],
)
def test_contradictory_faults_are_refused(emulator: MaskinportenEmulator, fields: dict[str, Any]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        emulator.inject_fault(**fields)


def test_a_fault_applies_at_least_once(emulator: MaskinportenEmulator) -> None:
    with pytest.raises(ValueError, match="times"):
        emulator.inject_fault(status=500, times=0)


# Concurrency and lifecycle


def test_concurrent_requests_from_threads_are_all_served(
    emulator: MaskinportenEmulator, grant: Callable[..., str]
) -> None:
    assertions = [grant() for _ in range(32)]
    with ThreadPoolExecutor(max_workers=32) as pool:
        statuses = list(pool.map(lambda assertion: post_grant(emulator, assertion).status_code, assertions))
    assert statuses == [200] * 32
    assert emulator.token_requests == 32 and emulator.tokens_issued == 32 and emulator.reused_jtis == []


@pytest.mark.asyncio
async def test_async_clients_are_served(emulator: MaskinportenEmulator, grant: Callable[..., str]) -> None:
    async with httpx.AsyncClient() as client:
        response = await client.post(emulator.url + "/token", data={"grant_type": JWT_BEARER, "assertion": grant()})
    assert verify_access_token(emulator, response)["client_id"] == CLIENT_ID


def emulator_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith(("maskinporten-emulator", "Thread-"))]


def test_stop_closes_idle_keep_alive_connections_and_leaves_no_thread() -> None:
    before = set(emulator_threads())
    with MaskinportenEmulator() as emulator, httpx.Client() as client:
        assert client.get(emulator.url + "/jwk").status_code == 200
        emulator.stop()
    assert set(emulator_threads()) <= before
    with pytest.raises(httpx.TransportError):
        httpx.get(emulator.url + "/jwk", timeout=1)


def test_serve_forever_blocks_until_stopped() -> None:
    emulator = MaskinportenEmulator()
    serving = threading.Thread(target=emulator.serve_forever)
    serving.start()
    deadline = time.monotonic() + 5
    while emulator.port == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert httpx.get(emulator.url + "/jwk").status_code == 200
    emulator.stop()
    serving.join(timeout=5)
    assert not serving.is_alive()


def test_url_before_start_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="start"):
        _ = MaskinportenEmulator().url
