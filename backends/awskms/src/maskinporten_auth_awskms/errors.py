"""Turn boto3/botocore failures into :class:`~maskinporten_auth.errors.SigningError` with a hint on what to do.

Messages carry the operation, AWS's error code and message (key ARNs and principal names, never credentials), and
the key as the caller named it.
"""

from __future__ import annotations

from typing import Final

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    CredentialRetrievalError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ReadTimeoutError,
    SSOError,
    TokenRetrievalError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from maskinporten_auth.errors import SigningError

__all__ = ["BACKEND", "PERMISSIONS", "from_botocore_error", "from_client_error"]

BACKEND: Final = "aws-kms"

PERMISSIONS: Final = {"Sign": "kms:Sign", "GetPublicKey": "kms:GetPublicKey", "DescribeKey": "kms:DescribeKey"}
"""The IAM permission each KMS operation this backend calls needs."""

_CREDENTIALS_HINT: Final = (
    "AWS rejected or could not find the credentials: set AWS_PROFILE (and run `aws sso login` for SSO profiles) or "
    "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or give the workload an IAM role"
)
_TRANSIENT_HINT: Final = "a transient failure inside KMS; a later attempt usually succeeds"

_CODE_HINTS: Final = {
    "NotFoundException": "no such key, alias or ARN in region {region}: check the key id and that the client's "
    "region is the key's region (a key ARN names its region)",
    "InvalidArnException": "the key ARN is malformed; expected arn:aws:kms:<region>:<account>:key/<key id>",
    "DisabledException": "the key is disabled; enable it with `aws kms enable-key --key-id <key id>`",
    "KMSInvalidStateException": "the key cannot be used in its current state (for example pending deletion: "
    "`aws kms cancel-key-deletion`, then `aws kms enable-key`)",
    "KeyUnavailableException": "the key's custom key store (CloudHSM or external) is disconnected or unreachable; "
    "reconnect the key store, or try again later",
    "InvalidKeyUsageException": "the key cannot sign with this algorithm; Maskinporten needs an RSA key created "
    "with `--key-spec RSA_2048 --key-usage SIGN_VERIFY`",
    "ThrottlingException": "the KMS request quota is exhausted even after botocore's retries; tokens are cached, "
    "so this means many processes sign at once: request a higher quota or use retries mode 'adaptive'",
    "DependencyTimeoutException": _TRANSIENT_HINT,
    "KMSInternalException": _TRANSIENT_HINT,
    "UnrecognizedClientException": _CREDENTIALS_HINT,
    "InvalidSignatureException": _CREDENTIALS_HINT,
    "ExpiredTokenException": _CREDENTIALS_HINT,
    "IncompleteSignatureException": _CREDENTIALS_HINT,
}

_CREDENTIAL_ERRORS: Final = (
    NoCredentialsError,
    PartialCredentialsError,
    CredentialRetrievalError,
    TokenRetrievalError,
    SSOError,
)
_REGION_HINT: Final = (
    "no AWS region is configured: set AWS_DEFAULT_REGION (boto3 does not read AWS_REGION) or region in the "
    "profile, give the key as an ARN, or pass client=boto3.client('kms', region_name=...)"
)
_NETWORK_HINT: Final = (
    "KMS could not be reached: check the network, proxy (HTTPS_PROXY) and, in a private subnet, the KMS VPC endpoint"
)


def _access_denied_hint(operation: str, key: str) -> str:
    permission = PERMISSIONS.get(operation, f"kms:{operation}")
    return (
        f"the caller lacks {permission} on key {key!r}: allow {permission} on the key's ARN in the caller's IAM "
        f"policy and make sure the key policy lets IAM policies grant it (this backend needs "
        f"{', '.join(PERMISSIONS.values())})"
    )


def from_client_error(error: ClientError, *, key: str, region: str | None) -> SigningError:
    """Return the SigningError for an error response from KMS to an operation on ``key``."""
    details = error.response.get("Error", {})
    code = details.get("Code", "Unknown")
    text = details.get("Message") or "no message"
    operation = error.operation_name
    if code == "AccessDeniedException":
        hint: str | None = _access_denied_hint(operation, key)
    else:
        hint = _CODE_HINTS.get(code, "").format(region=region or "(not set)") or None
    return SigningError(f"KMS {operation} failed: {code}: {text}", backend=BACKEND, key=key, hint=hint)


def from_botocore_error(error: BotoCoreError, *, key: str) -> SigningError:
    """Return the SigningError for a failure on this side of KMS: credentials, region, network."""
    if isinstance(error, _CREDENTIAL_ERRORS):
        hint: str | None = _CREDENTIALS_HINT
    elif isinstance(error, NoRegionError):
        hint = _REGION_HINT
    elif isinstance(error, (BotoConnectionError, ConnectionClosedError, ReadTimeoutError)):
        hint = _NETWORK_HINT
    else:
        hint = None
    return SigningError(f"{type(error).__name__}: {error}", backend=BACKEND, key=key, hint=hint)
