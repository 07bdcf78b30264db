"""Credentials for Key Vault: azure-identity's default chain, and a sync credential usable by the async clients."""

from __future__ import annotations

import asyncio
import functools
from types import TracebackType
from typing import Any

from azure.core.credentials import AccessToken, TokenCredential

__all__ = ["ThreadedAsyncCredential", "default_credential"]


def default_credential() -> TokenCredential:
    """azure-identity's DefaultAzureCredential: environment, workload identity, managed identity, Azure CLI, ..."""
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()


class ThreadedAsyncCredential:
    """An ``AsyncTokenCredential`` that asks a sync ``TokenCredential`` for tokens in a worker thread.

    It lets the SDK's async clients share the credential (and its token cache) of the sync clients without
    blocking the event loop; the credential is not bound to any event loop, so it works from every one. The
    wrapped credential belongs to the caller: closing this adapter leaves it open.
    """

    def __init__(self, credential: TokenCredential) -> None:
        self._credential = credential

    async def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        enable_cae: bool = False,
        **kwargs: Any,
    ) -> AccessToken:
        """Return a token for ``scopes`` from the wrapped credential, obtained in a worker thread."""
        call = functools.partial(
            self._credential.get_token, *scopes, claims=claims, tenant_id=tenant_id, enable_cae=enable_cae, **kwargs
        )
        return await asyncio.to_thread(call)

    async def close(self) -> None:
        """Do nothing: the wrapped credential is closed by whoever owns it."""

    async def __aenter__(self) -> ThreadedAsyncCredential:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        await self.close()
