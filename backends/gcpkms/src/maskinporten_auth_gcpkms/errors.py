"""Turning Google's errors into :class:`~maskinporten_auth.errors.SigningError` with a hint on what to do.

Over REST the client raises by HTTP status (a 400 is ``BadRequest`` whether Google meant ``INVALID_ARGUMENT`` or
``FAILED_PRECONDITION``), so the canonical status is read from Google's error body, and over gRPC from the call's
status code. Messages carry the operation, Google's status and message (resource names and permissions, never
credentials), and the key version as configured.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Final

from google.api_core.exceptions import GoogleAPICallError, GoogleAPIError
from google.auth.exceptions import DefaultCredentialsError, GoogleAuthError

from maskinporten_auth.errors import SigningError

from .names import KeyVersionName

__all__ = ["BACKEND", "ROLE", "KmsIntegrityError", "gcp_errors", "signing_error"]

BACKEND: Final = "gcp-kms"

#: The predefined role that holds every permission this backend uses (useToSign and viewPublicKey).
ROLE: Final = "roles/cloudkms.signerVerifier"

_CREDENTIALS_HINT: Final = (
    "Application Default Credentials are missing or were refused: on GKE/NAIS use Workload Identity, elsewhere set "
    "GOOGLE_APPLICATION_CREDENTIALS or run `gcloud auth application-default login`; or pass client=/credentials="
)
_TRANSIENT_HINT: Final = "a transient failure of Cloud KMS; a later attempt usually succeeds"
_NETWORK_HINT: Final = (
    "Cloud KMS could not be reached: check the network path to cloudkms.googleapis.com (proxy, firewall, "
    "Private Google Access) or the client's api_endpoint"
)


class KmsIntegrityError(SigningError):
    """Cloud KMS's answer failed an integrity check (CRC32C or key version name); its signature was not used.

    Google asks clients to discard such an answer and try again a limited number of times.
    """


def _google_error(exc: GoogleAPICallError) -> dict[str, Any]:
    """The ``error`` object of Google's JSON error body, when the REST transport received one."""
    try:
        body = exc.response.json() if exc.response is not None else None
    except (ValueError, AttributeError):  # not JSON; or a gRPC call, whose response has no body
        return {}
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def _status_and_message(exc: GoogleAPICallError) -> tuple[str, str]:
    """Google's canonical status (``FAILED_PRECONDITION``, ...) and its message, without the REST transport's URL."""
    error = _google_error(exc)
    status, message = error.get("status"), error.get("message")
    if not isinstance(status, str) or not status:
        code = exc.grpc_status_code
        status = code.name if code is not None else f"HTTP {exc.code}"
    if not isinstance(message, str) or not message:
        message = str(exc.message).strip() or type(exc).__name__
    return status, message


def _hint(status: str, message: str, name: KeyVersionName, operation: str) -> str | None:
    if status == "PERMISSION_DENIED":
        return (
            f"grant the workload's service account {ROLE} on the key (gcloud kms keys add-iam-policy-binding "
            f"{name.key} --keyring {name.key_ring} --location {name.location} --project {name.project} "
            f"--member serviceAccount:<account> --role {ROLE}); Google also answers PERMISSION_DENIED for a key "
            "version that does not exist, so check the name too"
        )
    if status == "NOT_FOUND":
        return "no such key version: check the project, location, key ring, key and version number in the name"
    if status == "FAILED_PRECONDITION" and "DESTROYED" in message:
        return (
            "the key version is destroyed and its key material is gone for good: create a new key version "
            "(gcloud kms keys versions create), register its public key and switch to it"
        )
    if status == "FAILED_PRECONDITION" and "DESTROY_SCHEDULED" in message:
        return (
            f"the key version is scheduled for destruction: restore it (gcloud kms keys versions restore "
            f"{name.gcloud_arguments()}), then enable it (gcloud kms keys versions enable ...)"
        )
    if status == "FAILED_PRECONDITION" and "DISABLED" in message:
        return f"the key version is disabled: gcloud kms keys versions enable {name.gcloud_arguments()}"
    if status == "RESOURCE_EXHAUSTED":
        return (
            "the Cloud KMS request quota is exhausted; tokens are cached, so this means many processes sign at once: "
            "ask for a higher 'cryptographic requests per minute' quota for the project, or wait a minute"
        )
    if status == "UNAUTHENTICATED":
        return _CREDENTIALS_HINT
    if status in ("UNAVAILABLE", "DEADLINE_EXCEEDED", "INTERNAL"):
        return _TRANSIENT_HINT
    if status == "INVALID_ARGUMENT" and operation == "asymmetricSign":
        return "the key version's algorithm does not fit the request; check the signer's algorithm"
    return None


def signing_error(exc: Exception, *, name: KeyVersionName, operation: str) -> SigningError:
    """Describe a failure of ``operation`` (``asymmetricSign``, ``getPublicKey``) on ``name`` as a SigningError."""
    key = str(name)
    if isinstance(exc, GoogleAPICallError):
        status, message = _status_and_message(exc)
        hint = _hint(status, message, name, operation)
        return SigningError(f"Cloud KMS {operation} failed: {status}: {message}", backend=BACKEND, key=key, hint=hint)
    if isinstance(exc, DefaultCredentialsError):
        return SigningError(f"no Google credentials: {exc}", backend=BACKEND, key=key, hint=_CREDENTIALS_HINT)
    if isinstance(exc, GoogleAuthError):
        return SigningError(
            f"Google credentials failed: {type(exc).__name__}: {exc}", backend=BACKEND, key=key, hint=_CREDENTIALS_HINT
        )
    if isinstance(exc, GoogleAPIError):  # RetryError: the retry deadline passed
        return SigningError(
            f"Cloud KMS {operation} failed: {type(exc).__name__}: {exc}", backend=BACKEND, key=key, hint=_TRANSIENT_HINT
        )
    return SigningError(
        f"Cloud KMS {operation} failed: {type(exc).__name__}: {exc}", backend=BACKEND, key=key, hint=_NETWORK_HINT
    )


@contextlib.contextmanager
def gcp_errors(name: KeyVersionName, operation: str) -> Iterator[None]:
    """Re-raise Google's errors, its credentials' errors and network errors inside the block as SigningError."""
    try:
        yield
    except (GoogleAPIError, GoogleAuthError, OSError) as exc:
        raise signing_error(exc, name=name, operation=operation) from exc
