"""AwsKmsSigner against LocalStack's KMS: every signature is verified locally, never with kms.verify."""

from __future__ import annotations

import asyncio
import base64
import datetime
import json
import threading
from collections.abc import Callable
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from jose import jws
from maskinporten_auth import ConfigurationError
from maskinporten_auth.jwk import b64url, public_key_from_jwk
from maskinporten_auth_awskms import AwsKmsSigner

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
