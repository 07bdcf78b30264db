"""The token endpoint's edges without a server: the bounded body, redirects, the token's syntax, the error mapping."""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from maskinporten_auth import InvalidResponseError, TokenRequestError
from maskinporten_auth.endpoints import MAX_BODY_BYTES, HttpPath, error_from_response, parse_token_response
from maskinporten_auth.mp_codes import explain, hint_for

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


def post(handler: object, **options: object) -> httpx.Response:
    """POST the form as a token endpoint does, through an application's client with ``handler`` as its transport."""
    with httpx.Client(transport=httpx.MockTransport(handler), **options) as client:  # type: ignore[arg-type]
        return HttpPath(client, timeout=5.0, max_connections=1).send("POST", URL, 5.0, data=FORM)


def gzip(data: bytes) -> bytes:
    compressor = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    return compressor.compress(data) + compressor.flush()


def test_a_body_without_content_length_is_cut_at_the_cap_without_reading_the_rest():
    stream = CountingStream(chunks=160)  # 10 MiB
    with pytest.raises(InvalidResponseError) as raised:
        post(lambda request: httpx.Response(200, stream=stream))
    assert "larger than a token response" in str(raised.value) and raised.value.retryable
    assert stream.taken == MAX_BODY_BYTES // 65536 + 1


def test_a_declared_content_length_over_the_cap_fails_before_the_body_is_read():
    stream = CountingStream(chunks=160)
    response = httpx.Response(200, headers={"Content-Length": str(160 * 65536)}, stream=stream)
    with pytest.raises(InvalidResponseError, match="declares 10485760 bytes"):
        post(lambda request: response)
    assert stream.taken == 0


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "gzip, gzip"])
def test_an_encoded_answer_is_an_invalid_response_since_the_request_asked_for_identity(encoding):
    bomb = gzip(bytes(64 << 20))  # a gzip bomb is one of them: it is never inflated
    with pytest.raises(InvalidResponseError, match="asked for identity") as raised:
        post(lambda request: raw(200, bomb, Content_Encoding=encoding))
    assert raised.value.retryable


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_returned_not_followed_by_a_client_that_follows_redirects(status):
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return raw(status, Location="https://attacker.test/token")

    response = post(handler, follow_redirects=True)
    assert response.status_code == status
    assert [str(request.url) for request in requests] == [URL]
    error = error_from_response(response)
    assert type(error) is TokenRequestError and not error.retryable
    assert "redirect" in str(error) and "https://attacker.test/token" in str(error)


def test_a_response_the_transport_read_in_advance_is_taken_as_it_is():
    """httpx.MockTransport with ``content=`` (as applications test with) hands over a response read already."""
    assert post(lambda request: httpx.Response(200, content=TOKEN_BODY)).content == TOKEN_BODY


def test_the_request_asks_for_an_uncompressed_form_post():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return raw(200, TOKEN_BODY)

    post(handler)
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
