"""HTTP clients for a token client that show a test every response they receive, read whole."""

from __future__ import annotations

from collections.abc import Callable

import httpx

__all__ = ["observed_clients"]


def observed_clients(note: Callable[[httpx.Response], None]) -> tuple[httpx.Client, httpx.AsyncClient]:
    """A sync and an async client that call ``note`` with each response, its body read, before the caller gets it.

    Give them as ``http_client=`` and ``async_http_client=`` to watch what the token endpoint sends back.
    """

    def hook(response: httpx.Response) -> None:
        response.read()
        note(response)

    async def async_hook(response: httpx.Response) -> None:
        await response.aread()
        note(response)

    return httpx.Client(event_hooks={"response": [hook]}), httpx.AsyncClient(event_hooks={"response": [async_hook]})
