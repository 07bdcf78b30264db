"""One request to the token endpoint or the Altinn exchange, bounded in time and size, never redirected.

httpx's timeouts apply to each network operation, so a server that drips one byte a second never trips them. Here
one attempt gets one deadline that covers the connection pool, connect, TLS, the request, the response headers and
the body:

- sync (:func:`send_bounded`): every network stream the request touches is *armed*: its ``read`` and ``write`` take
  the time left before the deadline of the attempt running in the current thread (a context variable) as their
  timeout, and raise httpcore's ``ReadTimeout``/``WriteTimeout`` once it has passed. Streams are armed as httpcore
  opens them (its ``trace`` extension reports each new TCP, TLS and proxy stream) and when a response hands its
  stream over (``network_stream``), so a kept-alive connection is bounded when it is used again. This needs no
  thread, works in any worker thread, and leaves the application's own requests on a shared client alone (their
  context has no deadline). The gaps: the response headers of a kept-alive connection the application opened
  itself and that no token request has used yet are bounded per read only, and so are transports that are not
  httpcore's (an application's own ``httpx.BaseTransport``); on an HTTP/2 connection a thread may read for
  another's request, under its own deadline.
- async (:func:`apost_form`): the whole exchange runs under ``asyncio.wait_for``.

The response body is read as a stream and capped twice: at :data:`MAX_ENCODED_BYTES` as it arrives and at
:data:`MAX_DECODED_BYTES` after decompression, which is done here, chunk by chunk with a bounded output, so a gzip
bomb never inflates past the cap. Redirects are never followed, whatever the client's ``follow_redirects``: the grant
goes to the configured token endpoint only, and a 3xx answer is returned like any other non-200.
"""

from __future__ import annotations

import contextvars
import threading
import time
import zlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import httpx

from .errors import InvalidResponseError, NetworkError, TokenRequestError

if TYPE_CHECKING:
    import httpcore

__all__ = [
    "MAX_DECODED_BYTES",
    "MAX_ENCODED_BYTES",
    "PooledClient",
    "apost_form",
    "send_bounded",
    "typed_error",
]

#: The most bytes of a token response body read from the network. A token response is a few kilobytes.
MAX_ENCODED_BYTES = 256 * 1024
#: The most bytes of a token response body after decompression.
MAX_DECODED_BYTES = 256 * 1024

#: The monotonic deadline of the token request running in this context, or None outside one.
_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("maskinporten_auth_deadline", default=None)
_ARMED = "_maskinporten_auth_armed"
_DEADLINE_PASSED = "the attempt's deadline passed before the whole answer arrived"


def typed_error(exc: TokenRequestError | httpx.HTTPError, target: str) -> TokenRequestError:
    """``exc`` as a :class:`TokenRequestError`: a typed one unchanged, an httpx failure as a retryable NetworkError."""
    if isinstance(exc, TokenRequestError):
        return exc
    kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "failed"
    # httpx messages name the URL and the OS error, never the request's body or headers (the grant, a token).
    return NetworkError(f"the request to {target} {kind}: {type(exc).__name__}: {exc}")


class PooledClient:
    """The HTTP client a token source sends with: the application's ``httpx.Client``, or one of its own.

    Its own client is made on first use and keeps up to ``max_connections`` connections alive, so that every fetch
    of an auth family, from any thread, reuses connections and TLS sessions. Unless the environment names a proxy
    (``HTTPS_PROXY`` and the like, which its own client then honours as httpx does), its requests go straight to the
    client's transport: a token request needs none of what ``Client.send`` adds (auth flows, redirects, event hooks,
    a cookie jar), and that saves about a third of the CPU an exchange costs. The application's client is used as it
    is, through ``Client.send``, and never closed.
    """

    def __init__(self, given: httpx.Client | None, *, timeout: float, max_connections: int) -> None:
        self._client = given
        self._direct: httpx.BaseTransport | None = None
        self._owned = given is None
        self._timeout = timeout
        self._max_connections = max_connections
        self._lock = threading.Lock()

    @property
    def opened(self) -> httpx.Client | None:
        """The client, if there is one now (the application's, or its own until :meth:`close`)."""
        return self._client

    def get(self) -> httpx.Client:
        """The client, made now if needed."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    client, self._direct = self._open()
                    self._client = client  # last: a thread that finds the client finds its transport too
        return self._client

    def _open(self) -> tuple[httpx.Client, httpx.BaseTransport | None]:
        limits = httpx.Limits(max_connections=self._max_connections, max_keepalive_connections=self._max_connections)
        if _environment_names_a_proxy():
            return httpx.Client(timeout=self._timeout, follow_redirects=False, limits=limits), None
        direct = httpx.HTTPTransport(limits=limits)
        return httpx.Client(transport=direct, timeout=self._timeout, follow_redirects=False), direct

    def send(
        self,
        method: str,
        url: str,
        timeout: float,
        *,
        data: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """:func:`send_bounded` with this client, straight to its transport when it is its own."""
        client = self.get()
        direct = self._direct if client is self._client else None
        return send_bounded(client, method, url, timeout, data=data, headers=headers, transport=direct)

    def close(self) -> None:
        """Close its own client (a later :meth:`get` makes a new one); the application's stays open."""
        if self._owned and self._client is not None:
            client, self._client, self._direct = self._client, None, None
            client.close()

    def forget(self) -> None:
        """Drop its own client without closing it: after ``os.fork()`` the connections are the parent's."""
        if self._owned:
            self._client, self._direct = None, None
        self._lock = threading.Lock()


def _environment_names_a_proxy() -> bool:
    """Whether httpx would route a request through a proxy from the environment (it reads the same mapping)."""
    import urllib.request

    proxies = urllib.request.getproxies()
    return any(proxies.get(scheme) for scheme in ("http", "https", "all"))


def send_bounded(
    client: httpx.Client,
    method: str,
    url: str,
    timeout: float,
    *,
    data: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    transport: httpx.BaseTransport | None = None,
) -> httpx.Response:
    """Send one request with ``client``; the answer must arrive in full within ``timeout`` seconds.

    With ``transport`` (``client``'s own, when nothing else of the client applies), the request goes straight to it.
    Returns a response whose content is read, decoded and at most :data:`MAX_DECODED_BYTES`; a 3xx is returned
    as it is, not followed. Raises ``httpx.TimeoutException`` when the deadline passes, another ``httpx.HTTPError``
    when the exchange fails, and :class:`InvalidResponseError` when the body is too large or in an unknown encoding.
    """
    extensions = {"trace": _arm_reported_stream}
    if transport is None:
        request = _build_request(client, method, url, timeout, data=data, headers=headers, extensions=extensions)
    else:
        merged = client.headers.copy()  # the client's defaults (User-Agent, ...), as Client.send would send them
        merged.update({**_REQUEST_HEADERS, **(headers or {})})
        request = httpx.Request(
            method,
            url,
            data=None if data is None else dict(data),
            headers=merged,
            extensions={"timeout": httpx.Timeout(timeout).as_dict(), **extensions},
        )
    token = _deadline.set(time.monotonic() + timeout)
    try:
        if transport is None:
            response = client.send(request, stream=True, follow_redirects=False)
        else:
            response = transport.handle_request(request)
            response.request = request
        try:
            _arm(response.extensions.get("network_stream"))
            body = _BoundedBody(response)
            for chunk in (response.content,) if body.read_by_transport else response.iter_raw():
                body.feed(chunk)
            return body.response()
        finally:
            response.close()
    finally:
        _deadline.reset(token)


async def apost_form(client: httpx.AsyncClient, url: str, form: Mapping[str, str], timeout: float) -> httpx.Response:
    """POST ``form`` as :func:`send_bounded` does, with an ``httpx.AsyncClient``.

    The deadline cancels the exchange wherever it is.
    """
    request = _build_request(client, "POST", url, timeout, data=form)

    async def exchange() -> httpx.Response:
        response = await client.send(request, stream=True, follow_redirects=False)
        try:
            body = _BoundedBody(response)
            if body.read_by_transport:
                body.feed(response.content)
            else:
                async for chunk in response.aiter_raw():
                    body.feed(chunk)
            return body.response()
        finally:
            await response.aclose()

    import asyncio

    try:
        return await asyncio.wait_for(exchange(), timeout)
    except asyncio.TimeoutError:
        raise httpx.ReadTimeout(_DEADLINE_PASSED, request=request) from None


def _build_request(
    client: httpx.Client | httpx.AsyncClient,
    method: str,
    url: str,
    timeout: float,
    *,
    data: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    extensions: dict[str, Any] | None = None,
) -> httpx.Request:
    return client.build_request(
        method,
        url,
        data=None if data is None else dict(data),
        headers={**_REQUEST_HEADERS, **(headers or {})},
        timeout=timeout,
        extensions=extensions or {},
    )


# No compression is asked for (a token response is small); one that comes anyway is decoded here, bounded.
_REQUEST_HEADERS = {"Accept": "application/json", "Accept-Encoding": "identity"}


def _time_left(error: type[httpcore.TimeoutException], timeout: float | None) -> float | None:
    """The timeout for one network operation: ``timeout`` cut to the time left, or ``error`` when none is left."""
    deadline = _deadline.get()
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise error(_DEADLINE_PASSED)
    return left if timeout is None else min(timeout, left)


def _arm(stream: object) -> None:
    """Make ``stream`` (an ``httpcore.NetworkStream``) honour the deadline of the token request using it."""
    import httpcore  # loaded by httpx's transport by the time it reports a stream; not at import

    if not isinstance(stream, httpcore.NetworkStream) or getattr(stream, _ARMED, False):
        return
    read, write = stream.read, stream.write

    def bounded_read(max_bytes: int, timeout: float | None = None) -> bytes:
        return read(max_bytes, _time_left(httpcore.ReadTimeout, timeout))

    def bounded_write(buffer: bytes, timeout: float | None = None) -> None:
        write(buffer, _time_left(httpcore.WriteTimeout, timeout))

    stream.read = bounded_read  # type: ignore[method-assign]
    stream.write = bounded_write  # type: ignore[method-assign]
    setattr(stream, _ARMED, True)


def _arm_reported_stream(event: str, info: dict[str, Any]) -> None:
    """httpcore ``trace`` callback: arm each stream it opens (TCP, TLS, proxy tunnel) as it reports it."""
    if event.endswith(".complete"):
        _arm(info.get("return_value"))


class _BoundedBody:
    """Collects a streamed response's raw body and decodes it, failing as soon as a cap is passed.

    ``read_by_transport`` tells of a transport that hands over a response it has read and decoded already (as
    ``httpx.MockTransport`` does with ``content=``): its content is taken as it is, under the decoded cap.
    """

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self._encoded = 0
        self._decoded = 0
        self._chunks: list[bytes] = []
        self.read_by_transport = response.is_stream_consumed
        encoding = "identity" if self.read_by_transport else response.headers.get("content-encoding", "identity")
        encoding = encoding.strip().lower()
        if encoding not in ("identity", "", *_INFLATERS):
            raise self._invalid(f"its Content-Encoding {encoding[:40]!r} is not supported (gzip, deflate or none)")
        self._encoding = encoding
        self._inflater = _INFLATERS[encoding]() if encoding in _INFLATERS else None
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_ENCODED_BYTES:
            raise self._too_large(f"it declares {int(declared)} bytes")

    def _invalid(self, problem: str) -> InvalidResponseError:
        status = self._response.status_code
        return InvalidResponseError(
            f"the answer (HTTP {status}) from {self._response.request.url.host} is unusable: {problem}", status=status
        )

    def _too_large(self, detail: str) -> InvalidResponseError:
        return self._invalid(f"the body is larger than a token response can be ({detail})")

    def feed(self, chunk: bytes) -> None:
        """Take the next raw chunk."""
        self._encoded += len(chunk)
        if self._encoded > MAX_ENCODED_BYTES:
            raise self._too_large(f"over {MAX_ENCODED_BYTES} bytes on the wire")
        if self._inflater is None:
            self._append(chunk)
            return
        try:
            # At most one byte beyond the room left comes out: enough to show that the cap was passed.
            self._append(self._inflater.decompress(chunk, MAX_DECODED_BYTES - self._decoded + 1))
        except zlib.error:
            raise self._invalid(f"the body is not valid {self._encoding} data") from None

    def _append(self, data: bytes) -> None:
        self._decoded += len(data)
        if self._decoded > MAX_DECODED_BYTES:
            raise self._too_large(f"over {MAX_DECODED_BYTES} bytes decoded")
        self._chunks.append(data)

    def response(self) -> httpx.Response:
        """The response with its decoded body (and no Content-Encoding left to apply)."""
        if self._inflater is not None and self._encoded and not self._inflater.eof:
            raise self._invalid(f"the {self._encoding} body is cut off")
        kept = [(name, value) for name, value in self._response.headers.multi_items() if name not in _RECODED]
        return httpx.Response(
            self._response.status_code,
            headers=kept,
            content=b"".join(self._chunks),
            request=self._response.request,
        )


_RECODED = ("content-encoding", "content-length", "transfer-encoding")


class _Inflater:
    """Streaming gzip or deflate decompression with a cap on each step's output (zlib's ``max_length``).

    All input is consumed or the output hit the cap, so nothing is held back that a final flush would release.
    """

    def __init__(self, wbits: int) -> None:
        self._zlib = zlib.decompressobj(wbits)
        self._raw_deflate_allowed = wbits == zlib.MAX_WBITS

    @property
    def eof(self) -> bool:
        """Whether the compressed stream ended properly."""
        return self._zlib.eof

    def decompress(self, data: bytes, max_length: int) -> bytes:
        """Decompress ``data`` into at most ``max_length`` bytes; raise ``zlib.error`` for corrupt data."""
        try:
            return self._zlib.decompress(data, max_length)
        except zlib.error:
            # "deflate" is zlib-wrapped by the standard, but some servers send raw deflate (httpx allows it too).
            if not self._raw_deflate_allowed:
                raise
            self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
            return self._zlib.decompress(data, max_length)
        finally:
            self._raw_deflate_allowed = False


_INFLATERS = {
    "gzip": lambda: _Inflater(zlib.MAX_WBITS | 16),
    "x-gzip": lambda: _Inflater(zlib.MAX_WBITS | 16),
    "deflate": lambda: _Inflater(zlib.MAX_WBITS),
}
