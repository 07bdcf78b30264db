"""The token endpoint's edges without a server: the bounded body, redirects, the token's syntax, the error mapping."""

from __future__ import annotations

import asyncio
import re
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from maskinporten_auth import InvalidResponseError, TokenRequestError
from maskinporten_auth.errors import hint_for
from maskinporten_auth.mp_codes import explain
from maskinporten_auth.token_client import error_from_response, parse_token_response
from maskinporten_auth.transport import MAX_DECODED_BYTES, MAX_ENCODED_BYTES, apost_form, send_bounded

URL = "https://maskinporten.test/token"
FORM = {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": "e30.e30.c2ln"}
TOKEN_BODY = b'{"access_token": "eyJhbGciOiJSUzI1NiJ9.e30.c2ln", "token_type": "Bearer", "expires_in": 120}'


class CountingStream(httpx.SyncByteStream):
    """A response body of ``chunks`` chunks of 64 KiB with no Content-Length, counting how many were taken."""

    def __init__(self, chunks: int, chunk: bytes = b" " * 65536) -> None:
        self.chunks, self.chunk, self.taken = chunks, chunk, 0

    def __iter__(self) -> Iterator[bytes]:
        for _ in range(self.chunks):
            self.taken += 1
            yield self.chunk


def raw(status: int, body: bytes = b"", **headers: str) -> httpx.Response:
    """A response whose body the client reads from a stream, as from the network (not read in advance)."""
    return httpx.Response(
        status,
        headers={name.replace("_", "-"): value for name, value in headers.items()},
        stream=httpx.ByteStream(body),
    )


def client_answering(response: httpx.Response, **options: object) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(lambda request: response), **options)  # type: ignore[arg-type]


@pytest.fixture(params=[False, True], ids=["client-send", "direct"])
def direct(request: pytest.FixtureRequest) -> bool:
    """Whether a request goes through ``Client.send`` (an application's client) or straight to the transport."""
    return bool(request.param)


def post(client: httpx.Client, *, direct: bool = False) -> httpx.Response:
    """POST the form as a token client does: through ``Client.send``, or (``direct``) straight to its transport."""
    return send_bounded(client, "POST", URL, 5.0, data=FORM, transport=client._transport if direct else None)


def gzip(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    return compressor.compress(data) + compressor.flush()


def test_a_body_without_content_length_is_cut_at_the_cap_without_reading_the_rest(direct):
    stream = CountingStream(chunks=160)  # 10 MiB
    with client_answering(httpx.Response(200, stream=stream)) as client, pytest.raises(InvalidResponseError) as raised:
        post(client, direct=direct)
    assert "larger than a token response" in str(raised.value) and raised.value.retryable
    assert stream.taken == MAX_ENCODED_BYTES // 65536 + 1


def test_a_declared_content_length_over_the_cap_fails_before_the_body_is_read(direct):
    stream = CountingStream(chunks=160)
    response = httpx.Response(200, headers={"Content-Length": str(160 * 65536)}, stream=stream)
    with client_answering(response) as client, pytest.raises(InvalidResponseError, match="declares 10485760 bytes"):
        post(client, direct=direct)
    assert stream.taken == 0


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "raw-deflate"])
def test_compressed_token_responses_are_decoded(encoding, direct):
    if encoding == "gzip":
        body = gzip(TOKEN_BODY)
    elif encoding == "deflate":
        body = zlib.compress(TOKEN_BODY)
    else:
        raw_deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
        body, encoding = raw_deflate.compress(TOKEN_BODY) + raw_deflate.flush(), "deflate"
    with client_answering(raw(200, body, Content_Encoding=encoding)) as client:
        answer = post(client, direct=direct)
    assert answer.content == TOKEN_BODY
    assert "content-encoding" not in answer.headers
    assert parse_token_response(answer).expires_in == 120


def test_a_gzip_bomb_is_stopped_just_past_the_decoded_cap(direct):
    bomb = gzip(bytes(64 << 20))
    assert len(bomb) < MAX_ENCODED_BYTES
    with (
        client_answering(raw(200, bomb, Content_Encoding="gzip")) as client,
        pytest.raises(InvalidResponseError, match=f"over {MAX_DECODED_BYTES}"),
    ):
        post(client, direct=direct)


@pytest.mark.parametrize(
    ("encoding", "body", "problem"),
    [
        ("br", b"\x00" * 10, "Content-Encoding 'br' is not supported"),
        ("gzip, gzip", gzip(gzip(TOKEN_BODY)), "is not supported"),
        ("gzip", b"not gzip at all", "not valid gzip data"),
        ("gzip", gzip(TOKEN_BODY)[:-12], "body is cut off"),
    ],
    ids=["brotli", "nested", "garbage", "truncated"],
)
def test_an_unusable_encoding_is_an_invalid_response(encoding, body, problem, direct):
    with (
        client_answering(raw(200, body, Content_Encoding=encoding)) as client,
        pytest.raises(InvalidResponseError, match=problem),
    ):
        post(client, direct=direct)


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_returned_not_followed_by_a_client_that_follows_redirects(status, direct):
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return raw(status, Location="https://attacker.test/token")

    with httpx.Client(transport=httpx.MockTransport(handler), follow_redirects=True) as client:
        response = post(client, direct=direct)

    async def async_post() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler), follow_redirects=True) as client:
            return await apost_form(client, URL, FORM, 5.0)

    async_response = asyncio.run(async_post())
    assert response.status_code == async_response.status_code == status
    assert [str(request.url) for request in requests] == [URL, URL]
    error = error_from_response(response)
    assert type(error) is TokenRequestError and not error.retryable
    assert "redirect" in str(error) and "https://attacker.test/token" in str(error)


@pytest.mark.parametrize("mode", ["sync", "direct", "async"])
def test_a_response_the_transport_read_in_advance_is_taken_as_it_is(mode):
    """httpx.MockTransport with ``content=`` (as applications test with) hands over a read, decoded response."""
    handler = lambda request: httpx.Response(200, headers={"Content-Encoding": "gzip"}, content=gzip(TOKEN_BODY))  # noqa: E731
    if mode != "async":
        with httpx.Client(transport=httpx.MockTransport(handler)) as client:
            response = post(client, direct=mode == "direct")
    else:

        async def async_post() -> httpx.Response:
            async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
                return await apost_form(client, URL, FORM, 5.0)

        response = asyncio.run(async_post())
    assert response.content == TOKEN_BODY


def test_the_request_asks_for_an_uncompressed_form_post(direct):
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return raw(200, TOKEN_BODY)

    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        post(client, direct=direct)
    (request,) = seen
    assert request.method == "POST" and request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.headers["accept-encoding"] == "identity"


# The token's syntax

SECRET_PART = "Zk9vQmFyU2VjcmV0VG9rZW5QYXJ0"


@pytest.mark.parametrize(
    "token",
    [
        f"eyJhbGciOiJSUzI1NiJ9.{SECRET_PART}.c2ln\r\nX-Injected: yes",
        f"eyJhbGciOiJSUzI1NiJ9.{SECRET_PART}.c2ln\n",
        f"eyJhbGciOiJSUzI1NiJ9.{SECRET_PART} c2ln",
        f"eyJhbGciOiJSUzI1NiJ9.{SECRET_PART}.c2ln\t",
        f"eyJhbGciOiJSUzI1NiJ9.{SECRET_PART}.søt",
        f"eyJhbGciOiJSUzI1NiJ9.{SECRET_PART}.c2ln\x00",
        f"={SECRET_PART}",
        f"{SECRET_PART}=a",
    ],
    ids=["crlf-injection", "trailing-newline", "space", "tab", "non-ascii", "nul", "leading-padding", "inner-padding"],
)
def test_an_access_token_outside_the_b64token_syntax_is_refused_without_quoting_it(token):
    response = httpx.Response(200, json={"access_token": token, "token_type": "Bearer", "expires_in": 120})
    with pytest.raises(InvalidResponseError, match="RFC 6750 b64token") as raised:
        parse_token_response(response)
    assert SECRET_PART not in str(raised.value) and SECRET_PART not in repr(raised.value)


@pytest.mark.parametrize(
    "token", ["eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln-_", "abc+/~.-_==", "opaque-token", "YQ=="]
)
def test_an_access_token_in_the_b64token_syntax_is_accepted(token):
    response = httpx.Response(200, json={"access_token": token, "token_type": "Bearer", "expires_in": 120})
    assert parse_token_response(response).access_token == token


# The MP code, wherever Maskinporten puts it


@pytest.mark.parametrize(
    "body",
    [
        {"error": "invalid_grant", "error_description": "Invalid JWT signature (MP-124) (trace_id: 0a1b)"},
        {"error": "invalid_grant", "error_description": "x", "error_uri": "https://maskinporten.no/errors/MP-124"},
        {"error": "invalid_grant", "error_description": "MP-124", "error_uri": "https://maskinporten.no/errors/MP-124"},
    ],
    ids=["description-only", "uri-only", "both"],
)
def test_the_mp_code_is_read_from_the_description_or_the_uri(body):
    error = error_from_response(httpx.Response(400, json=body))
    assert error.code == "MP-124"
    assert error.hint == explain("MP-124").hint


def test_every_mp_code_the_emulator_returns_has_a_hint():
    source = "\n".join(path.read_text() for path in Path(_emulator_dir()).glob("*.py"))
    codes = set(re.findall(r'"(MP-\d{3})"', source))
    assert {"MP-011", "MP-122", "MP-124", "MP-301", "MP-302", "MP-303"} <= codes
    assert {code for code in codes if hint_for(code) is None} == set()


def test_the_own_orgno_as_consumer_org_refusal_has_a_hint():
    description = "Det er samme organisasjonsnummer både på klient og i consumer_org claimet. (trace_id: 1f)"
    error = error_from_response(
        httpx.Response(400, json={"error": "invalid_request", "error_description": description})
    )
    assert error.hint and "leave consumer_org out" in error.hint


def _emulator_dir() -> Path:
    import maskinporten_auth.testing

    return Path(maskinporten_auth.testing.__file__).parent
