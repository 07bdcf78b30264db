"""An HTTP client for a token endpoint that shows a test every response it receives, read whole."""

from __future__ import annotations

from collections.abc import Callable

import httpx

__all__ = ["observed_client"]


def observed_client(note: Callable[[httpx.Response], None]) -> httpx.Client:
    """A client that calls ``note`` with each response, its body read, before the caller gets it.

    Give it as ``http_client=`` to watch what the token endpoint sends back, to sync and async callers alike.
    """

    def hook(response: httpx.Response) -> None:
        response.read()
        note(response)

    return httpx.Client(event_hooks={"response": [hook]})
