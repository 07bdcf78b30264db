"""The credential Key Vault is called with when none is given: azure-identity's default chain."""

from __future__ import annotations

from azure.core.credentials import TokenCredential

__all__ = ["default_credential"]


def default_credential() -> TokenCredential:
    """azure-identity's DefaultAzureCredential: environment, workload identity, managed identity, Azure CLI, ..."""
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()
