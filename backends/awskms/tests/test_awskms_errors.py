"""Failures of KMS and of boto3 become SigningError with a hint; bad settings fail at construction."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse, HTTPHeaders
from botocore.config import Config
from maskinporten_auth_awskms import AwsKmsSigner

from maskinporten_auth import ConfigurationError, SigningError

ECC_SPECS = ("ECC_NIST_P256", "ECC_NIST_P384", "ECC_SECG_P256K1")


def sign_error(signer: AwsKmsSigner) -> SigningError:
    with pytest.raises(SigningError) as caught:
        signer.sign(b"header.claims")
    assert caught.value.backend == "aws-kms"
    assert caught.value.key == signer.key_id
    return caught.value


def test_unknown_key_is_not_found_with_a_region_hint(kms_client: Any) -> None:
    missing = str(uuid.uuid4())

    error = sign_error(AwsKmsSigner(missing, kid="k", client=kms_client))

    assert "DescribeKey failed: NotFoundException" in error.message
    assert error.hint is not None and "eu-north-1" in error.hint
    assert missing in str(error)


def test_unknown_alias_is_not_found(kms_client: Any) -> None:
    error = sign_error(AwsKmsSigner("alias/no-such-alias", kid="k", client=kms_client))

    assert "NotFoundException" in error.message


def test_key_disabled_before_first_use(kms_client: Any, kms_create_key: Callable[..., str]) -> None:
    key_id = kms_create_key()
    kms_client.disable_key(KeyId=key_id)

    error = sign_error(AwsKmsSigner(key_id, kid="k", client=kms_client))

    assert "Sign failed: DisabledException" in error.message
    assert error.hint is not None and "aws kms enable-key" in error.hint


def test_key_disabled_after_first_use_then_enabled_again(kms_client: Any, kms_create_key: Callable[..., str]) -> None:
    key_id = kms_create_key()
    signer = AwsKmsSigner(key_id, kid="k", client=kms_client)
    signer.sign(b"works")
    kms_client.disable_key(KeyId=key_id)

    assert "DisabledException" in sign_error(signer).message

    kms_client.enable_key(KeyId=key_id)
    assert signer.sign(b"works again")


def test_key_pending_deletion(kms_client: Any, kms_create_key: Callable[..., str]) -> None:
    key_id = kms_create_key()
    kms_client.schedule_key_deletion(KeyId=key_id, PendingWindowInDays=7)

    error = sign_error(AwsKmsSigner(key_id, kid="k", client=kms_client))

    assert "KMSInvalidStateException" in error.message and "pending deletion" in error.message
    assert error.hint is not None and "cancel-key-deletion" in error.hint


def test_encrypt_decrypt_key_is_refused_by_name(kms_client: Any, kms_create_key: Callable[..., str]) -> None:
    key_id = kms_create_key("RSA_2048", usage="ENCRYPT_DECRYPT")
    signer = AwsKmsSigner(key_id, kid="k", client=kms_client)
    signs = []
    kms_client.meta.events.register("before-call.kms.Sign", lambda **_: signs.append(1))

    error = sign_error(signer)
    with pytest.raises(SigningError, match="key usage is ENCRYPT_DECRYPT"):
        signer.public_jwk()  # a key that cannot sign is not offered for registration either

    assert "key usage is ENCRYPT_DECRYPT; signing needs SIGN_VERIFY" in error.message
    assert key_id in str(error)
    assert error.hint is not None and "--key-usage SIGN_VERIFY" in error.hint
    assert signs == []


@pytest.mark.parametrize("spec", ECC_SPECS)
def test_ecc_key_does_not_offer_the_rsa_algorithm(
    kms_client: Any, kms_create_key: Callable[..., str], spec: str
) -> None:
    # KMS gives every RSA SIGN_VERIFY key all three PKCS#1 v1.5 algorithms, so a key that lacks the algorithm is
    # always a key of another type: the spec and the offered algorithms are checked together.
    signer = AwsKmsSigner(kms_create_key(spec), kid="k", algorithm="RS384", client=kms_client)

    error = sign_error(signer)

    assert f"key spec is {spec} with signing algorithms ECDSA_SHA_" in error.message
    assert "RS384 needs RSASSA_PKCS1_V1_5_SHA_384 on an RSA key" in error.message
    assert error.hint is not None and "--key-spec RSA_2048" in error.hint


def stub_access_denied(client: Any, operation: str) -> None:
    """Answer ``operation`` with AccessDeniedException instead of sending it; other operations reach LocalStack.

    LocalStack's KMS enforces no IAM or key policy, so it cannot deny access; this is the one botocore stub
    response in these tests. The error body is the one KMS sends.
    """
    message = (
        f"User: arn:aws:sts::000000000000:assumed-role/app/ci is not authorized to perform: kms:{operation} on "
        f"resource: arn:aws:kms:eu-north-1:000000000000:key/x because no identity-based policy allows the "
        f"kms:{operation} action"
    )
    parsed = {
        "Error": {"Code": "AccessDeniedException", "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": 400},
    }
    response = AWSResponse(client.meta.endpoint_url, 400, HTTPHeaders(), None)
    client.meta.events.register_first(f"before-call.kms.{operation}", lambda **_: (response, parsed))


@pytest.mark.parametrize("operation", ["DescribeKey", "GetPublicKey", "Sign"])
def test_access_denied_names_the_missing_permission_and_the_key(
    kms_make_client: Callable[..., Any], kms_rsa_keys: dict[str, str], operation: str
) -> None:
    client = kms_make_client()
    stub_access_denied(client, operation)
    key_id = kms_rsa_keys["RSA_2048"]

    error = sign_error(AwsKmsSigner(key_id, kid="k", client=client))

    assert f"{operation} failed: AccessDeniedException" in error.message
    assert error.hint is not None
    assert f"lacks kms:{operation} on key {key_id!r}" in error.hint


def test_unreachable_endpoint_is_a_network_error() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again below: nothing listens there
    client = boto3.session.Session().client(
        "kms",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="eu-north-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"max_attempts": 1}, connect_timeout=2),
    )

    error = sign_error(AwsKmsSigner("alias/anything", kid="k", client=client))

    assert error.message.startswith("EndpointConnectionError: Could not connect to the endpoint URL")
    assert error.hint is not None and "could not be reached" in error.hint


@pytest.fixture
def kms_bare_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Any, kms_endpoint: str) -> pytest.MonkeyPatch:
    """An environment with LocalStack as the endpoint and no AWS credentials, profile or region anywhere."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_DEFAULT_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                 "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ENDPOINT_URL", kms_endpoint)
    return monkeypatch


def test_no_credentials(kms_bare_environment: pytest.MonkeyPatch, kms_rsa_keys: dict[str, str]) -> None:
    kms_bare_environment.setenv("AWS_DEFAULT_REGION", "eu-north-1")

    error = sign_error(AwsKmsSigner(kms_rsa_keys["RSA_2048"], kid="k"))

    assert error.message == "NoCredentialsError: Unable to locate credentials"
    assert error.hint is not None and "AWS_PROFILE" in error.hint


def test_no_region_unless_the_key_is_an_arn(
    kms_bare_environment: pytest.MonkeyPatch, kms_client: Any, kms_rsa_keys: dict[str, str]
) -> None:
    kms_bare_environment.setenv("AWS_ACCESS_KEY_ID", "test")
    kms_bare_environment.setenv("AWS_SECRET_ACCESS_KEY", "test")
    key_id = kms_rsa_keys["RSA_2048"]

    error = sign_error(AwsKmsSigner(key_id, kid="k"))
    arn = kms_client.describe_key(KeyId=key_id)["KeyMetadata"]["Arn"]
    by_arn = AwsKmsSigner(arn, kid="k")

    assert error.message.startswith("NoRegionError")
    assert error.hint is not None and "AWS_DEFAULT_REGION" in error.hint
    assert by_arn.sign(b"the ARN names the region")


@pytest.mark.parametrize(
    "key_id",
    ["", " alias/x", "alias/", "alias/x\n", "keys/abc", "arn:aws:s3:::bucket", "arn:aws:kms::1:key/x", 42, None],
)
def test_malformed_key_id_fails_at_construction(key_id: Any) -> None:
    with pytest.raises(ConfigurationError) as caught:
        AwsKmsSigner(key_id)

    assert caught.value.field == "key_id"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"algorithm": "PS256"}, "algorithm"),
        ({"kid": ""}, "kid"),
        ({"client": boto3.session.Session().client("s3", region_name="eu-north-1")}, "client"),
        ({"client": object()}, "client"),
        ({"certificate_chain": b"not a certificate"}, "certificate_chain"),
    ],
)
def test_bad_settings_fail_at_construction(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        AwsKmsSigner("alias/maskinporten", **kwargs)

    assert caught.value.field == field
