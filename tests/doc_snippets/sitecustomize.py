"""The world the documentation's code runs in (see ``tests/test_doc_snippets.py``), set up as Python starts.

Loaded as ``sitecustomize`` from ``PYTHONPATH`` only by that test's subprocesses: Maskinporten's environments
(``"test"``, ``"prod"``) and Altinn's platforms (``"tt02"``, ``"prod"``) are the test's emulator, and a request to
any other host than loopback goes to the test's stand-in API, so that a snippet runs as written, offline.
"""

from __future__ import annotations

import dataclasses
import os

_ISSUER = os.environ.get("DOC_SNIPPETS_ISSUER")


def _enter_the_world(issuer: str, api: str) -> None:
    import httpx
    import requests.adapters

    from maskinporten_auth import environment
    from maskinporten_auth.endpoints import PLATFORMS

    emulator = environment.Environment(issuer=issuer, token_endpoint=issuer + "token", jwks_uri=issuer + "jwk")
    for name in ("test", "prod"):
        environment._PRESETS[name] = dataclasses.replace(emulator, name=name)
    for name in ("tt02", "prod"):
        PLATFORMS[name] = issuer.rstrip("/")
    stand_in = httpx.URL(api)

    def local(url: httpx.URL) -> httpx.URL:
        if url.host in ("127.0.0.1", "localhost"):
            return url
        return url.copy_with(scheme=stand_in.scheme, host=stand_in.host, port=stand_in.port)

    send = httpx.HTTPTransport.handle_request
    asend = httpx.AsyncHTTPTransport.handle_async_request
    requests_send = requests.adapters.HTTPAdapter.send

    def handle_request(self: httpx.HTTPTransport, request: httpx.Request) -> httpx.Response:
        request.url = local(request.url)
        return send(self, request)

    async def handle_async_request(self: httpx.AsyncHTTPTransport, request: httpx.Request) -> httpx.Response:
        request.url = local(request.url)
        return await asend(self, request)

    def requests_adapter_send(
        self: requests.adapters.HTTPAdapter, request: requests.PreparedRequest, *args: object, **kwargs: object
    ) -> requests.Response:
        request.url = str(local(httpx.URL(str(request.url))))
        return requests_send(self, request, *args, **kwargs)  # type: ignore[arg-type]

    httpx.HTTPTransport.handle_request = handle_request  # type: ignore[method-assign]
    httpx.AsyncHTTPTransport.handle_async_request = handle_async_request  # type: ignore[method-assign]
    requests.adapters.HTTPAdapter.send = requests_adapter_send  # type: ignore[method-assign]


if _ISSUER:
    try:
        _enter_the_world(_ISSUER, os.environ["DOC_SNIPPETS_API"])
    except Exception as exc:  # Python would only print a line and go on, into the real Maskinporten
        raise SystemExit(f"tests/doc_snippets/sitecustomize.py could not set up the docs' world: {exc!r}") from exc
