"""LocalKeySigner: every key format it reads, and every key it must refuse."""

from __future__ import annotations

import base64
import datetime
import json

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from jose import jwk as jose_jwk

from maskinporten_auth import ConfigurationError, LocalKeySigner

PKCS8 = serialization.PrivateFormat.PKCS8
PKCS1 = serialization.PrivateFormat.TraditionalOpenSSL
PEM = serialization.Encoding.PEM


def pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, fmt=PKCS8, password: bytes | None = None) -> bytes:
    encryption = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    return key.private_bytes(PEM, fmt, encryption)


def assert_signs_verifiably(signer: LocalKeySigner, key: rsa.RSAPrivateKey, hash_algorithm=None) -> None:
    signature = signer.sign(b"header.claims")
    key.public_key().verify(signature, b"header.claims", padding.PKCS1v15(), hash_algorithm or hashes.SHA256())


@pytest.mark.parametrize("fmt", [PKCS1, PKCS8], ids=["pkcs1", "pkcs8"])
def test_pem_in_pkcs1_and_pkcs8(rsa_key, fmt):
    signer = LocalKeySigner.from_pem(pem(rsa_key, fmt), kid="k1")
    assert signer.kid == "k1" and signer.x5c is None and signer.algorithm == "RS256"
    assert_signs_verifiably(signer, rsa_key)


def test_encrypted_pem_with_the_right_password(rsa_key, tmp_path):
    path = tmp_path / "key.pem"
    path.write_bytes(pem(rsa_key, password=b"hemmelig"))
    signer = LocalKeySigner.from_pem_file(path, kid="k1", password="hemmelig")
    assert_signs_verifiably(signer, rsa_key)


def test_encrypted_pem_with_a_wrong_password_names_the_password(rsa_key, make_secret):
    wrong = make_secret()
    with pytest.raises(ConfigurationError) as raised:
        LocalKeySigner.from_pem(pem(rsa_key, password=b"hemmelig"), kid="k1", password=wrong.encode())
    assert raised.value.field == "password" and "wrong" in str(raised.value)
    assert wrong not in str(raised.value) and wrong not in repr(raised.value)


def test_encrypted_pem_without_a_password_asks_for_one(rsa_key):
    with pytest.raises(ConfigurationError, match="a password is required") as raised:
        LocalKeySigner.from_pem(pem(rsa_key, password=b"hemmelig"), kid="k1")
    assert raised.value.field == "password"


def test_password_for_an_unencrypted_pem_is_an_error(rsa_key):
    with pytest.raises(ConfigurationError, match="not encrypted"):
        LocalKeySigner.from_pem(pem(rsa_key), kid="k1", password=b"x")


@pytest.mark.parametrize(
    ("algorithm", "hash_algorithm"),
    [("RS256", hashes.SHA256()), ("RS384", hashes.SHA384()), ("RS512", hashes.SHA512())],
)
def test_each_algorithm_signs_with_its_hash(rsa_key, algorithm, hash_algorithm):
    signer = LocalKeySigner(rsa_key, kid="k", algorithm=algorithm)
    assert_signs_verifiably(signer, rsa_key, hash_algorithm)


@pytest.mark.parametrize("algorithm", ["ES256", "PS256", "HS256", "none", "rs256"])
def test_algorithms_maskinporten_refuses_are_rejected(rsa_key, algorithm):
    with pytest.raises(ConfigurationError) as raised:
        LocalKeySigner(rsa_key, kid="k", algorithm=algorithm)
    assert raised.value.field == "algorithm"


def test_mkjwk_style_private_jwk_gives_kid_and_alg(rsa_key, private_jwk):
    text = json.dumps(private_jwk(rsa_key, kid="mkjwk-kid-1", use="sig", alg="RS384"))
    signer = LocalKeySigner.from_jwk(text)
    assert signer.kid == "mkjwk-kid-1" and signer.algorithm == "RS384"
    assert_signs_verifiably(signer, rsa_key, hashes.SHA384())


def test_jwk_set_with_one_key_and_kid_override(rsa_key, tmp_path, private_jwk):
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [private_jwk(rsa_key, kid="from-file")]}))
    signer = LocalKeySigner.from_jwk_file(path, kid="override")
    assert signer.kid == "override"
    assert_signs_verifiably(signer, rsa_key)


def test_public_jwk_is_refused_for_signing(rsa_key, private_jwk):
    public = {k: v for k, v in private_jwk(rsa_key).items() if k in ("kty", "n", "e")}
    with pytest.raises(ConfigurationError, match="public key"):
        LocalKeySigner.from_jwk(public)


def test_ec_jwk_is_refused():
    with pytest.raises(ConfigurationError, match="RSA"):
        LocalKeySigner.from_jwk({"kty": "EC", "crv": "P-256", "x": "a", "y": "b", "d": "c"})


def test_ec_key_is_refused():
    key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(ConfigurationError, match="needs an RSA key") as raised:
        LocalKeySigner.from_pem(pem(key), kid="k")
    assert raised.value.field == "key"


def test_rsa_key_under_2048_bits_is_refused():
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(ConfigurationError, match="1024 bits"):
        LocalKeySigner.from_pem(pem(small), kid="k")


def test_garbage_is_not_a_pem_key():
    with pytest.raises(ConfigurationError, match="not a PEM private key"):
        LocalKeySigner.from_pem(b"-----BEGIN NONSENSE-----\nAAAA\n-----END NONSENSE-----\n", kid="k")


def test_missing_file_names_the_path(tmp_path):
    with pytest.raises(ConfigurationError, match="cannot read") as raised:
        LocalKeySigner.from_pem_file(tmp_path / "missing.pem", kid="k")
    assert raised.value.field == "key"


def test_pkcs12_gives_the_chain_leaf_first_in_x5c(rsa_key, certificate_chain, tmp_path):
    chain, _ = certificate_chain
    leaf, intermediate, root = chain
    bundle = pkcs12.serialize_key_and_certificates(
        b"virksomhet", rsa_key, leaf, [root, intermediate], serialization.BestAvailableEncryption(b"pw")
    )
    path = tmp_path / "virksomhet.p12"
    path.write_bytes(bundle)
    signer = LocalKeySigner.from_pkcs12_file(path, password=b"pw")
    assert signer.kid is None
    assert signer.x5c == [
        base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode() for cert in (leaf, intermediate, root)
    ]
    assert_signs_verifiably(signer, rsa_key)


def test_pkcs12_wrong_password(rsa_key, certificate_chain):
    leaf = certificate_chain[0][0]
    bundle = pkcs12.serialize_key_and_certificates(
        b"v", rsa_key, leaf, None, serialization.BestAvailableEncryption(b"pw")
    )
    with pytest.raises(ConfigurationError, match="wrong") as raised:
        LocalKeySigner.from_pkcs12(bundle, password=b"nope")
    assert raised.value.field == "password"


def test_certificate_that_does_not_match_the_key_is_refused(other_rsa_key, certificate_chain):
    leaf = certificate_chain[0][0]
    with pytest.raises(ConfigurationError, match="does not match"):
        LocalKeySigner(other_rsa_key, certificate_chain=leaf.public_bytes(PEM))


@pytest.mark.parametrize(
    ("not_before", "not_after", "message"),
    [
        (-400, -10, "expired"),
        (10, 400, "not valid before"),
    ],
    ids=["expired", "not-yet-valid"],
)
def test_certificate_outside_its_validity_is_refused(rsa_key, make_certificate, not_before, not_after, message):
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate: x509.Certificate = make_certificate(
        rsa_key,
        "REGNSKAP AS",
        not_before=now + datetime.timedelta(days=not_before),
        not_after=now + datetime.timedelta(days=not_after),
    )
    with pytest.raises(ConfigurationError, match=message):
        LocalKeySigner(rsa_key, certificate_chain=certificate.public_bytes(PEM))


def test_kid_and_certificate_together_is_refused(rsa_key, certificate_chain):
    leaf = certificate_chain[0][0]
    with pytest.raises(ConfigurationError) as raised:
        LocalKeySigner(rsa_key, kid="k", certificate_chain=leaf.public_bytes(PEM))
    assert raised.value.field == "kid"


def test_public_jwk_matches_the_key_and_has_no_private_members(rsa_key):
    signer = LocalKeySigner(rsa_key, kid="k1", algorithm="RS512")
    public = signer.public_jwk()
    assert set(public) == {"kty", "n", "e", "use", "kid", "alg"}
    assert public["kid"] == "k1" and public["alg"] == "RS512" and public["use"] == "sig"
    # python-jose, independently, turns the JWK back into the same key and verifies a signature with it
    signature = signer.sign(b"payload")
    assert jose_jwk.construct(public, algorithm="RS512").verify(b"payload", signature)
    with pytest.raises(InvalidSignature):
        rsa_key.public_key().verify(signature, b"other", padding.PKCS1v15(), hashes.SHA512())


def test_repr_shows_no_key_material(rsa_key):
    signer = LocalKeySigner(rsa_key, kid="k1")
    text = repr(signer)
    assert text == "LocalKeySigner(kid='k1', algorithm='RS256')"
    assert not hasattr(signer, "private_key") and not hasattr(signer, "private_bytes")
