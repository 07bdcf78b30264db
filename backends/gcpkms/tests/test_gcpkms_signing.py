"""Signing with the official google-cloud-kms client (REST) against the fake Cloud KMS; signatures verified apart."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from jose import jws
from maskinporten_auth_gcpkms import GcpKmsSigner, KmsIntegrityError
from maskinporten_auth_gcpkms import testing as fake_kms

from maskinporten_auth import ConfigurationError, SigningError
from maskinporten_auth.jwk import b64url, jwk_thumbprint
from maskinporten_auth.testing import longest_stall
from maskinporten_auth.testing.certificates import issue_certificate_chain

HASHES = {"RS256": hashes.SHA256(), "RS384": hashes.SHA384(), "RS512": hashes.SHA512()}
# Every key version algorithm that can sign for Maskinporten, with each JWS algorithm it signs.
SIGNING = [
    ("RSA_SIGN_PKCS1_2048_SHA256", "RS256"),
    ("RSA_SIGN_PKCS1_3072_SHA256", "RS256"),
    ("RSA_SIGN_PKCS1_4096_SHA256", "RS256"),
    ("RSA_SIGN_PKCS1_4096_SHA512", "RS512"),
    ("RSA_SIGN_RAW_PKCS1_2048", "RS256"),
    ("RSA_SIGN_RAW_PKCS1_2048", "RS384"),
    ("RSA_SIGN_RAW_PKCS1_2048", "RS512"),
    ("RSA_SIGN_RAW_PKCS1_3072", "RS384"),
    ("RSA_SIGN_RAW_PKCS1_4096", "RS384"),
]


def verify(version: fake_kms.FakeKeyVersion, algorithm: str, signing_input: bytes, signature: bytes) -> None:
    """Verify with cryptography and the key the fake holds: RSASSA-PKCS1-v1_5 with the algorithm's hash."""
    public_key = version.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    public_key.verify(signature, signing_input, padding.PKCS1v15(), HASHES[algorithm])


def compact_jws(signer: GcpKmsSigner, claims: dict[str, object]) -> str:
    header = b64url(json.dumps(signer.jose_header()).encode())
    signing_input = f"{header}.{b64url(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64url(signer.sign(signing_input.encode()))}"


@pytest.mark.parametrize(("kms_algorithm", "algorithm"), SIGNING)
def test_each_key_algorithm_signs_what_python_jose_and_cryptography_verify(
    gcp_shared_key, gcp_make_signer, kms_algorithm, algorithm
):
    version = gcp_shared_key(kms_algorithm)
    signer = gcp_make_signer(version, algorithm=algorithm, kid="gcp-kid")

    token = compact_jws(signer, {"iss": "client"})

    assert json.loads(jws.verify(token, signer.public_jwk(), algorithms=[algorithm])) == {"iss": "client"}
    signing_input, _, signature = token.rpartition(".")
    verify(version, algorithm, signing_input.encode(), jws.base64url_decode(signature.encode()))
    assert signer.public_jwk()["alg"] == algorithm


@pytest.mark.asyncio
@pytest.mark.parametrize(("kms_algorithm", "algorithm"), [SIGNING[0], SIGNING[3], SIGNING[5]])
async def test_asign_signatures_verify(gcp_shared_key, gcp_make_signer, kms_algorithm, algorithm):
    version = gcp_shared_key(kms_algorithm)
    signer = gcp_make_signer(version, algorithm=algorithm, kid="gcp-kid")

    signature = await signer.asign(b"header.claims")

    verify(version, algorithm, b"header.claims", signature)


@pytest.mark.parametrize(
    ("kms_algorithm", "own"),
    [
        ("RSA_SIGN_PKCS1_2048_SHA256", "RS256"),
        ("RSA_SIGN_PKCS1_4096_SHA512", "RS512"),
        ("RSA_SIGN_RAW_PKCS1_2048", "RS256"),
    ],
)
def test_without_algorithm_and_kid_the_key_version_gives_both(gcp_shared_key, gcp_make_signer, kms_algorithm, own):
    version = gcp_shared_key(kms_algorithm)

    signer = gcp_make_signer(version)

    public_key = version.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    assert signer.algorithm == own
    assert signer.kid == jwk_thumbprint(public_key)
    assert signer.jose_header() == {"alg": own, "kid": signer.kid}
    assert signer.public_jwk()["kid"] == signer.kid
    verify(version, own, b"x", signer.sign(b"x"))


def test_only_get_public_key_once_and_asymmetric_sign_are_called(gcp_kms, gcp_key, gcp_make_signer):
    version = gcp_key()
    signer = gcp_make_signer(version)

    for i in range(3):
        signer.sign(f"grant-{i}".encode())
    signer.public_jwk()

    assert gcp_kms.operations(version.name) == ["getPublicKey"] + ["asymmetricSign"] * 3
    assert gcp_kms.callers[fake_kms.ANONYMOUS] == {"roles/cloudkms.signerVerifier"}


def test_with_kid_and_algorithm_given_construction_calls_nothing(gcp_kms, gcp_key, gcp_make_signer):
    version = gcp_key()

    signer = gcp_make_signer(version, kid="mp-2026-1", algorithm="RS256")

    assert gcp_kms.operations(version.name) == []
    verify(version, "RS256", b"x", signer.sign(b"x"))
    assert gcp_kms.operations(version.name) == ["getPublicKey", "asymmetricSign"]


@pytest.mark.parametrize("fault", ["signature", "signature_crc32c", "name", "unverified_checksum"])
def test_an_answer_that_fails_its_integrity_check_is_refused(gcp_kms, gcp_key, gcp_make_signer, fault):
    version = gcp_key()
    signer = gcp_make_signer(version)
    gcp_kms.inject(version, fault)
    signed_before = gcp_kms.sign_count

    with pytest.raises(KmsIntegrityError) as caught:
        signer.sign(b"header.claims")

    assert gcp_kms.sign_count == signed_before + 1  # KMS did sign: the answer was refused here
    assert caught.value.backend == "gcp-kms"
    assert caught.value.hint
    gcp_kms.inject(version, None)
    verify(version, "RS256", b"again", signer.sign(b"again"))


def test_a_corrupted_signature_is_never_returned_even_if_its_checksum_matches(gcp_kms, gcp_key, gcp_make_signer):
    # the name check catches a signature made with another key version, which no checksum would
    version = gcp_key()
    signer = gcp_make_signer(version)
    gcp_kms.inject(version, "name")

    with pytest.raises(KmsIntegrityError, match="cryptoKeyVersions/999"):
        signer.sign(b"x")


def test_a_raw_key_gets_the_digest_info_and_its_checksum(gcp_kms, gcp_shared_key, gcp_make_signer):
    version = gcp_shared_key("RSA_SIGN_RAW_PKCS1_2048")
    signer = gcp_make_signer(version, algorithm="RS512")

    signature = signer.sign(b"x")

    verify(version, "RS512", b"x", signature)
    with pytest.raises(InvalidSignature):
        verify(version, "RS384", b"x", signature)


@pytest.mark.parametrize(
    ("kms_algorithm", "reason"),
    [
        ("EC_SIGN_P256_SHA256", "elliptic-curve"),
        ("EC_SIGN_P384_SHA384", "elliptic-curve"),
        ("RSA_SIGN_PSS_2048_SHA256", "RSASSA-PSS"),
        ("RSA_SIGN_PSS_4096_SHA512", "RSASSA-PSS"),
    ],
)
def test_ec_and_pss_keys_are_refused_before_anything_is_signed(
    gcp_kms, gcp_shared_key, gcp_make_signer, kms_algorithm, reason
):
    version = gcp_shared_key(kms_algorithm)

    with pytest.raises(SigningError, match=reason) as at_construction:
        gcp_make_signer(version)
    later = gcp_make_signer(version, kid="k", algorithm="RS256")
    with pytest.raises(SigningError, match=reason):
        later.sign(b"x")

    assert "RS256/RS384/RS512" in str(at_construction.value)
    assert "asymmetricSign" not in gcp_kms.operations(version.name)


def test_rs384_on_a_sha256_key_names_the_key_algorithms_that_work(gcp_kms, gcp_key, gcp_make_signer):
    version = gcp_key()

    with pytest.raises(SigningError) as caught:
        gcp_make_signer(version, algorithm="RS384")

    message = str(caught.value)
    assert "RSA_SIGN_PKCS1_2048_SHA256 signs RS256, not RS384" in message
    assert "RSA_SIGN_RAW_PKCS1_2048, RSA_SIGN_RAW_PKCS1_3072, RSA_SIGN_RAW_PKCS1_4096" in message
    assert "asymmetricSign" not in gcp_kms.operations(version.name)


def test_threads_share_one_public_key_read(gcp_kms, gcp_key, gcp_make_signer):
    version = gcp_key()
    signer = gcp_make_signer(version, kid="k", algorithm="RS256")
    inputs = [f"grant-{i}".encode() for i in range(32)]

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        signatures = list(pool.map(signer.sign, inputs))

    for signing_input, signature in zip(inputs, signatures, strict=True):
        verify(version, "RS256", signing_input, signature)
    operations = gcp_kms.operations(version.name)
    assert operations.count("getPublicKey") == 1
    assert operations.count("asymmetricSign") == 32


@pytest.mark.asyncio
async def test_tasks_share_one_public_key_read(gcp_kms, gcp_key, gcp_make_signer):
    version = gcp_key()
    signer = gcp_make_signer(version, kid="k", algorithm="RS256")
    inputs = [f"grant-{i}".encode() for i in range(24)]

    signatures = await asyncio.gather(*(signer.asign(signing_input) for signing_input in inputs))

    for signing_input, signature in zip(inputs, signatures, strict=True):
        verify(version, "RS256", signing_input, signature)
    assert gcp_kms.operations(version.name).count("getPublicKey") == 1


def test_asign_never_blocks_the_event_loop(gcp_kms, gcp_key, gcp_make_signer, monkeypatch):
    version = gcp_key()
    signer = gcp_make_signer(version, kid="k", algorithm="RS256")
    monkeypatch.setattr(gcp_kms, "sign_delay", 0.3)

    signature, stall = longest_stall(lambda: signer.asign(b"slow"))

    verify(version, "RS256", b"slow", signature)
    assert stall < 0.1, f"the event loop stalled for {stall * 1000:.0f} ms"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_signs_on_connections_of_its_own(gcp_kms, gcp_key, gcp_make_signer):
    version = gcp_key()
    signer = gcp_make_signer(version)
    signer.sign(b"parent")  # the parent's client now holds a kept-alive connection
    parent_peer = gcp_kms.requests[-1].peer
    read_end, write_end = os.pipe()

    pid = os.fork()
    if pid == 0:  # the child: sign, report, and leave without running the parent's cleanup
        status = 1
        try:
            os.close(read_end)
            os.write(write_end, signer.sign(b"child"))
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        child_signature = pipe.read()
    _, status = os.waitpid(pid, 0)

    assert os.waitstatus_to_exitcode(status) == 0
    verify(version, "RS256", b"child", child_signature)
    child_request = [r for r in gcp_kms.requests if r.name == version.name][-1]
    assert child_request.peer != parent_peer
    verify(version, "RS256", b"parent again", signer.sign(b"parent again"))
    assert gcp_kms.requests[-1].peer == parent_peer


def test_a_client_passed_in_is_used_and_left_open(gcp_kms, gcp_key):
    version = gcp_key()
    client = fake_kms.make_kms_client(gcp_kms.endpoint)
    signer = GcpKmsSigner(version.name, client=client)

    verify(version, "RS256", b"x", signer.sign(b"x"))
    signer.close()

    assert client.get_public_key(request={"name": version.name}).name == version.name


def test_repr_and_key_identity_name_the_key_version_and_nothing_secret(gcp_shared_key, gcp_make_signer):
    version = gcp_shared_key("RSA_SIGN_PKCS1_2048_SHA256")
    signer = gcp_make_signer(version, kid="mp-2026-1", algorithm="RS256")

    assert repr(signer) == f"GcpKmsSigner(key_version_name={version.name!r}, kid='mp-2026-1', algorithm='RS256')"
    assert signer.key_identity == f"gcp-kms:{version.name}:kid=mp-2026-1"
    assert not hasattr(signer, "private_key")


def pem_chain(certificates) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


def test_an_enterprise_certificate_for_the_key_version_is_sent_as_x5c(gcp_key, gcp_make_signer):
    version = gcp_key()
    chain = issue_certificate_chain(version.public_key(), intermediates=3)
    signer = gcp_make_signer(version, certificate_chain=pem_chain(chain))

    token = compact_jws(signer, {"iss": "client"})

    assert signer.kid is None
    assert signer.jose_header() == {"alg": "RS256", "x5c": signer.x5c}
    assert len(signer.x5c or []) == len(chain)  # leaf, three intermediates, root
    assert json.loads(jws.verify(token, signer.public_jwk(), algorithms=["RS256"])) == {"iss": "client"}


def test_a_certificate_for_another_key_is_refused_before_anything_is_signed(gcp_kms, gcp_key, gcp_make_signer):
    version = gcp_key()
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()

    with pytest.raises(ConfigurationError) as caught:
        gcp_make_signer(version, certificate_chain=pem_chain(issue_certificate_chain(other)))

    assert caught.value.field == "certificate_chain"
    assert "asymmetricSign" not in gcp_kms.operations(version.name)
