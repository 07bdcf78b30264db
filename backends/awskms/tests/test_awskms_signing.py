"""AwsKmsSigner against LocalStack's KMS: every signature is verified locally, never with kms.verify."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from collections.abc import Callable
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jose import jws  # type: ignore[import-untyped]
from maskinporten_auth_awskms import AwsKmsSigner

from maskinporten_auth import ConfigurationError
from maskinporten_auth.jwk import b64url, public_key_from_jwk

ALGORITHMS = ("RS256", "RS384", "RS512")
KEY_SPECS = ("RSA_2048", "RSA_3072", "RSA_4096")


def count_calls(client: Any, operation: str) -> list[str]:
    """Record every call of ``operation`` the client makes, through botocore's event hooks (no stubbing)."""
    calls: list[str] = []
    client.meta.events.register(f"before-call.kms.{operation}", lambda **_: calls.append(operation))
    return calls


def jws_compact(signer: AwsKmsSigner, header: dict[str, Any], claims: dict[str, Any]) -> str:
    """A compact JWS built and signed the way a grant is: base64url(header).base64url(claims), signed by KMS."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64url(signer.sign(signing_input.encode()))}"


@pytest.mark.parametrize("spec", KEY_SPECS)
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_signature_verifies_with_the_kms_public_key(
    kms_client: Any,
    kms_rsa_keys: dict[str, str],
    kms_public_key: Callable[[str], rsa.RSAPublicKey],
    kms_assert_signature: Callable[..., None],
    spec: str,
    algorithm: str,
) -> None:
    signer = AwsKmsSigner(kms_rsa_keys[spec], kid="kms-key", algorithm=algorithm, client=kms_client)
    message = b"header.claims-" + spec.encode() + algorithm.encode()

    signature = signer.sign(message)

    public_key = kms_public_key(kms_rsa_keys[spec])
    assert len(signature) == public_key.key_size // 8
    kms_assert_signature(public_key, signature, message, algorithm)
    token = jws_compact(signer, {"alg": algorithm, "kid": "kms-key"}, {"iss": "client"})
    assert json.loads(jws.verify(token, signer.public_jwk(), algorithms=[algorithm])) == {"iss": "client"}


def test_long_x5c_chain_signs_because_only_the_digest_goes_to_kms(
    kms_make_client: Callable[..., Any],
    kms_rsa_keys: dict[str, str],
    kms_public_key: Callable[[str], rsa.RSAPublicKey],
    kms_certificate_chain: Callable[..., tuple[bytes, list[x509.Certificate]]],
) -> None:
    key_id = kms_rsa_keys["RSA_2048"]
    pem, chain = kms_certificate_chain(kms_public_key(key_id), intermediates=4)
    client = kms_make_client()
    sent: list[dict[str, Any]] = []
    client.meta.events.register("provide-client-params.kms.Sign", lambda params, **_: sent.append(dict(params)))
    signer = AwsKmsSigner(key_id, client=client, certificate_chain=pem, algorithm="RS512")

    header = {"alg": "RS512", "x5c": signer.x5c}
    token = jws_compact(signer, header, {"iss": "client", "scope": "nav:test/api"})

    assert signer.kid is None
    assert signer.x5c == [base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode() for c in chain]
    assert len(token.split(".")[0]) > 4096  # longer than a RAW KMS message may be
    assert [(call["MessageType"], len(call["Message"])) for call in sent] == [("DIGEST", 64)]
    assert json.loads(jws.verify(token, signer.public_jwk(), algorithms=["RS512"]))["scope"] == "nav:test/api"
    leaf_key = chain[0].public_key()
    assert isinstance(leaf_key, rsa.RSAPublicKey)
    assert public_key_from_jwk(signer.public_jwk()).public_numbers() == leaf_key.public_numbers()
    assert signer.public_jwk()["x5c"] == signer.x5c


def test_certificate_for_another_key_is_refused_before_anything_is_signed(
    kms_make_client: Callable[..., Any],
    kms_rsa_keys: dict[str, str],
    kms_certificate_chain: Callable[..., tuple[bytes, list[x509.Certificate]]],
) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    pem, _ = kms_certificate_chain(other, intermediates=0)
    client = kms_make_client()
    signs = count_calls(client, "Sign")
    signer = AwsKmsSigner(kms_rsa_keys["RSA_2048"], client=client, certificate_chain=pem)

    with pytest.raises(ConfigurationError, match="does not match the signing key") as caught:
        signer.sign(b"header.claims")

    assert caught.value.field == "certificate_chain"
    assert signs == []


def test_public_jwk_is_the_kms_public_key_and_is_fetched_once(
    kms_make_client: Callable[..., Any],
    kms_rsa_keys: dict[str, str],
    kms_public_key: Callable[[str], rsa.RSAPublicKey],
) -> None:
    client = kms_make_client()
    fetches = count_calls(client, "GetPublicKey")
    describes = count_calls(client, "DescribeKey")
    signer = AwsKmsSigner(kms_rsa_keys["RSA_3072"], kid="kms-3072", algorithm="RS384", client=client)

    jwk = signer.public_jwk()
    signer.sign(b"a")
    assert signer.public_jwk() == jwk

    assert {key: jwk[key] for key in ("kty", "kid", "alg", "use")} == {
        "kty": "RSA",
        "kid": "kms-3072",
        "alg": "RS384",
        "use": "sig",
    }
    assert set(jwk) == {"kty", "kid", "alg", "use", "n", "e"}  # public members only
    expected = kms_public_key(kms_rsa_keys["RSA_3072"]).public_numbers()
    assert public_key_from_jwk(jwk).public_numbers() == expected
    assert (len(fetches), len(describes)) == (1, 1)


def test_alias_and_arn_name_the_key_and_a_moved_alias_does_not_change_the_signer(
    kms_client: Any,
    kms_create_key: Callable[..., str],
    kms_public_key: Callable[[str], rsa.RSAPublicKey],
    kms_assert_signature: Callable[..., None],
) -> None:
    first, second = kms_create_key(alias="alias/maskinporten-moving"), kms_create_key()
    arn = kms_client.describe_key(KeyId=first)["KeyMetadata"]["Arn"]
    by_alias = AwsKmsSigner("alias/maskinporten-moving", kid="k", client=kms_client)
    by_arn = AwsKmsSigner(arn, kid="k", client=kms_client)
    assert by_alias.sign(b"before") and by_arn.sign(b"before")

    kms_client.update_alias(AliasName="alias/maskinporten-moving", TargetKeyId=second)

    for signer in (by_alias, by_arn):
        kms_assert_signature(kms_public_key(first), signer.sign(b"after"), b"after", "RS256")
        assert signer.public_key().public_numbers() == kms_public_key(first).public_numbers()
    fresh = AwsKmsSigner("alias/maskinporten-moving", kid="k", client=kms_client)
    kms_assert_signature(kms_public_key(second), fresh.sign(b"after"), b"after", "RS256")


def test_default_client_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
    kms_endpoint: str,
    kms_rsa_keys: dict[str, str],
    kms_public_key: Callable[[str], rsa.RSAPublicKey],
    kms_assert_signature: Callable[..., None],
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", kms_endpoint)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-north-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.delenv("AWS_PROFILE", raising=False)

    signer = AwsKmsSigner(kms_rsa_keys["RSA_2048"], kid="k")

    kms_assert_signature(kms_public_key(kms_rsa_keys["RSA_2048"]), signer.sign(b"env"), b"env", "RS256")


def test_concurrent_signing_from_16_threads(
    kms_make_client: Callable[..., Any],
    kms_rsa_keys: dict[str, str],
    kms_public_key: Callable[[str], rsa.RSAPublicKey],
    kms_assert_signature: Callable[..., None],
) -> None:
    client = kms_make_client(max_pool_connections=16)
    describes, fetches = count_calls(client, "DescribeKey"), count_calls(client, "GetPublicKey")
    signer = AwsKmsSigner(kms_rsa_keys["RSA_2048"], kid="k", client=client)
    start = threading.Barrier(16)
    results: dict[int, bytes] = {}
    errors: list[BaseException] = []

    def work(number: int) -> None:
        try:
            start.wait(timeout=30)
            for round_ in range(4):
                results[number * 10 + round_] = signer.sign(f"thread {number} round {round_}".encode())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(number,)) for number in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert errors == []
    assert len(results) == 64
    public_key = kms_public_key(kms_rsa_keys["RSA_2048"])
    for index, signature in results.items():
        kms_assert_signature(public_key, signature, f"thread {index // 10} round {index % 10}".encode(), "RS256")
    assert (len(describes), len(fetches)) == (1, 1)


@pytest.mark.asyncio
async def test_concurrent_signing_from_50_asyncio_tasks(
    kms_make_client: Callable[..., Any],
    kms_rsa_keys: dict[str, str],
    kms_public_key: Callable[[str], rsa.RSAPublicKey],
    kms_assert_signature: Callable[..., None],
) -> None:
    signer = AwsKmsSigner(kms_rsa_keys["RSA_2048"], kid="k", algorithm="RS512", client=kms_make_client())
    ticks = 0

    async def heartbeat() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    beating = asyncio.create_task(heartbeat())
    messages = [f"task {number}".encode() for number in range(50)]
    signatures = await asyncio.wait_for(asyncio.gather(*(signer.asign(m) for m in messages)), timeout=120)
    beating.cancel()

    public_key = kms_public_key(kms_rsa_keys["RSA_2048"])
    for message, signature in zip(messages, signatures, strict=True):
        kms_assert_signature(public_key, signature, message, "RS512")
    assert ticks > 0  # the event loop kept running while KMS signed


def test_repr_names_the_key_and_nothing_secret(kms_endpoint: str, kms_rsa_keys: dict[str, str]) -> None:
    import boto3

    secret = "wJalrXUtnFEMI-do-not-print-K7MDENG"
    client = boto3.session.Session().client(
        "kms",
        endpoint_url=kms_endpoint,
        region_name="eu-north-1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key=secret,
    )
    signer = AwsKmsSigner(kms_rsa_keys["RSA_2048"], kid="kms-key", algorithm="RS384", client=client)
    signer.sign(b"warm up")

    text = repr(signer)

    assert text == f"AwsKmsSigner(key_id={kms_rsa_keys['RSA_2048']!r}, kid='kms-key', algorithm='RS384')"
    assert secret not in text and "AKIDEXAMPLE" not in text
