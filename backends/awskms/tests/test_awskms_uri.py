"""The awskms: key URI, resolved through the maskinporten_auth.signers entry point."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from maskinporten_auth_awskms import AwsKmsSigner
from maskinporten_auth_awskms.uri import key_id_from_uri

from maskinporten_auth import ConfigurationError, signer_from_uri
from maskinporten_auth.cli import main
from maskinporten_auth.jwk import public_key_from_jwk


def test_alias_uri_gives_a_working_signer(
    kms_client: Any,
    kms_create_key: Callable[..., str],
    kms_public_key: Callable[[str], rsa.RSAPublicKey],
    kms_assert_signature: Callable[..., None],
) -> None:
    key_id = kms_create_key("RSA_3072", alias="alias/maskinporten-uri")

    signer = signer_from_uri("awskms:///alias/maskinporten-uri", kid="uri-key", algorithm="RS384", client=kms_client)

    assert isinstance(signer, AwsKmsSigner)
    assert (signer.key_id, signer.kid, signer.algorithm) == ("alias/maskinporten-uri", "uri-key", "RS384")
    kms_assert_signature(kms_public_key(key_id), signer.sign(b"via uri"), b"via uri", "RS384")


@pytest.mark.parametrize(
    ("uri", "key_id"),
    [
        ("awskms:///1234abcd-12ab-34cd-56ef-1234567890ab", "1234abcd-12ab-34cd-56ef-1234567890ab"),
        ("awskms:///mrk-1234abcd12ab34cd56ef1234567890ab", "mrk-1234abcd12ab34cd56ef1234567890ab"),
        ("awskms:///alias/maskinporten", "alias/maskinporten"),
        ("AWSKMS:///alias/maskinporten%2Dprod", "alias/maskinporten-prod"),
        (
            "awskms:///arn:aws:kms:eu-north-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            "arn:aws:kms:eu-north-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        ),
        (
            "awskms:///arn:aws:kms:eu-north-1:111122223333:alias/maskinporten",
            "arn:aws:kms:eu-north-1:111122223333:alias/maskinporten",
        ),
    ],
)
def test_uri_forms(uri: str, key_id: str) -> None:
    assert key_id_from_uri(uri) == key_id
    assert signer_from_uri(uri, kid="k").key_id == key_id  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "uri",
    [
        "awskms://alias/maskinporten",
        "awskms:alias/maskinporten",
        "awskms:///",
        "awskms:///keys/maskinporten",
        "awskms:///alias/maskinporten?region=eu-north-1",
        "awskms:///alias/maskinporten#x",
        "awskms:///arn:aws:s3:::bucket",
    ],
)
def test_bad_uri(uri: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        signer_from_uri(uri)

    assert caught.value.field == "key"


def test_option_of_another_backend_is_refused() -> None:
    with pytest.raises(ConfigurationError) as caught:
        signer_from_uri("awskms:///alias/maskinporten", password="secret")

    assert caught.value.field == "password"
    assert "secret" not in str(caught.value)


def test_command_line_prints_the_jwk_to_register(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    kms_endpoint: str,
    kms_create_key: Callable[..., str],
    kms_public_key: Callable[[str], rsa.RSAPublicKey],
) -> None:
    key_id = kms_create_key(alias="alias/maskinporten-cli")
    for name, value in {
        "AWS_ENDPOINT_URL": kms_endpoint,
        "AWS_DEFAULT_REGION": "eu-north-1",
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)

    status = main(["jwk", "awskms:///alias/maskinporten-cli", "--kid", "mp-2026-1"])

    jwk = json.loads(capsys.readouterr().out)
    assert status == 0
    assert (jwk["kid"], jwk["alg"], jwk["use"]) == ("mp-2026-1", "RS256", "sig")
    assert public_key_from_jwk(jwk).public_numbers() == kms_public_key(key_id).public_numbers()
