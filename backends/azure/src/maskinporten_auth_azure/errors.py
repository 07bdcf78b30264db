"""Turning the Azure SDK's exceptions into :class:`~maskinporten_auth.errors.SigningError` with a hint."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from typing import Any

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
)

from maskinporten_auth.errors import SigningError

__all__ = ["BACKEND", "DISABLED_HINT", "PERMISSIONS_HINT", "azure_errors", "signing_error"]

BACKEND = "azure-key-vault"

PERMISSIONS_HINT = (
    "give the caller the RBAC role 'Key Vault Crypto User' on the key or the vault, or, on a vault that uses "
    "access policies, the key permissions 'sign' and 'get'"
)
_CERTIFICATE_PERMISSIONS_HINT = (
    "reading the certificate also needs the data action Microsoft.KeyVault/vaults/certificates/read, e.g. the RBAC "
    "role 'Key Vault Reader' (or the access-policy certificate permission 'get')"
)
DISABLED_HINT = "enable it (az keyvault key set-attributes --enabled true ...) or use an enabled version"
_RBAC_ACTION = re.compile(r"Action: '[^'\r\n]+'")
_CREDENTIAL_HINT = (
    "DefaultAzureCredential tries, in order, environment variables (AZURE_TENANT_ID, AZURE_CLIENT_ID and a "
    "secret, certificate or AZURE_FEDERATED_TOKEN_FILE), workload identity, managed identity and the Azure CLI "
    "('az login'); make one of them available, or pass credential= explicitly"
)
_CHALLENGE_HINT = (
    "the vault answered with an authentication challenge for another domain; for a vault outside "
    "*.vault.azure.net or *.managedhsm.azure.net pass verify_challenge_resource=False"
)


def _service_message(exc: AzureError) -> str:
    """The first line of what the service (or the credential) said, and the RBAC action a 403 names."""
    error: Any = getattr(exc, "error", None)
    text = str(getattr(error, "message", None) or exc.message or "").strip()
    if not text:
        return type(exc).__name__
    action = _RBAC_ACTION.search(text)
    first_line = text.splitlines()[0]
    return f"{first_line} ({action.group(0)})" if action else first_line


def _inner_code(exc: HttpResponseError) -> str | None:
    """Key Vault's ``innererror.code`` (``KeyDisabled``, ``ForbiddenByRbac``, ...), when the body has one."""
    innererror: Any = getattr(getattr(exc, "error", None), "innererror", None)
    code = innererror.get("code") if isinstance(innererror, dict) else None
    return code if isinstance(code, str) else None


def signing_error(exc: Exception, *, key: str, subject: str = "key") -> SigningError:
    """Describe an exception from Key Vault or its credential as a SigningError about ``key``.

    ``subject`` ("key" or "certificate") names what was asked for, in messages and hints.
    """
    if isinstance(exc, ClientAuthenticationError):
        return SigningError(
            f"could not authenticate to Key Vault: {_service_message(exc)}",
            backend=BACKEND,
            key=key,
            hint=_CREDENTIAL_HINT,
        )
    if isinstance(exc, ResourceNotFoundError):
        return SigningError(
            f"{subject} not found: {_service_message(exc)}",
            backend=BACKEND,
            key=key,
            hint=f"check the vault URL, the {subject}'s name and version; a deleted {subject} must be recovered first",
        )
    if isinstance(exc, HttpResponseError) and exc.status_code == 403:
        if _inner_code(exc) == "KeyDisabled":
            return SigningError("the key is disabled", backend=BACKEND, key=key, hint=DISABLED_HINT)
        hint = PERMISSIONS_HINT if subject == "key" else f"{PERMISSIONS_HINT}; {_CERTIFICATE_PERMISSIONS_HINT}"
        return SigningError(f"access denied (403): {_service_message(exc)}", backend=BACKEND, key=key, hint=hint)
    if isinstance(exc, HttpResponseError):
        return SigningError(f"Key Vault answered {exc.status_code}: {_service_message(exc)}", backend=BACKEND, key=key)
    if isinstance(exc, ServiceRequestError):
        return SigningError(
            f"could not reach Key Vault: {_service_message(exc)}",
            backend=BACKEND,
            key=key,
            hint="check the vault URL, DNS (private endpoints) and the network path to the vault",
        )
    if isinstance(exc, AzureError):
        return SigningError(f"the Key Vault request failed: {_service_message(exc)}", backend=BACKEND, key=key)
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    challenge = "challenge" in text.lower()
    return SigningError(
        f"the Key Vault client refused the request: {text}",
        backend=BACKEND,
        key=key,
        hint=_CHALLENGE_HINT if challenge else None,
    )


@contextlib.contextmanager
def azure_errors(key: str, subject: str = "key") -> Iterator[None]:
    """Re-raise the Azure SDK's exceptions (and its ValueErrors) inside the block as SigningError."""
    try:
        yield
    except (AzureError, ValueError) as exc:
        raise signing_error(exc, key=key, subject=subject) from exc
