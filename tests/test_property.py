"""Property tests: whatever the token endpoint answers and whatever is configured, only typed errors escape.

Response parsing gets arbitrary statuses, headers and bodies (JSON of any shape, near-misses of a token response,
bytes); configuration parsing gets arbitrary values. The only exceptions allowed out are MaskinportenError
subclasses — never KeyError, TypeError, AttributeError, OverflowError, RecursionError and the like.
"""

from __future__ import annotations

import email.utils
import json
import math
import socket
import string
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlsplit

import httpx
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from maskinporten_auth import (
    ConfigurationError,
    Environment,
    MaskinportenAuth,
    MaskinportenError,
    RefreshPolicy,
    RetryPolicy,
    Signer,
    SigningError,
    signer_from_uri,
)
from maskinporten_auth.config import VARIABLES, EnvConfig
from maskinporten_auth.endpoints import GrantClock, error_from_response, parse_token_response
from maskinporten_auth.environment import resolve_environment
from maskinporten_auth.errors import InvalidResponseError, ServerError, TokenRequestError
from maskinporten_auth.grant import validate_scopes
from maskinporten_auth.orgnr import is_valid_orgno, validate_orgno

T = TypeVar("T")
PROPERTY_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# Values that break naive code: huge and non-finite numbers, empty and odd strings, wrong container types.
def json_bytes(value: object) -> bytes:
    """JSON as a lenient server might send it: NaN and Infinity included (Python's parser accepts them)."""
    return json.dumps(value).encode("utf-8")


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**300, max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
TOKEN_FIELDS = ["access_token", "token_type", "expires_in", "scope", "error", "error_description", "error_uri"]
near_token_responses = st.dictionaries(st.sampled_from(TOKEN_FIELDS), json_values, max_size=len(TOKEN_FIELDS)).map(
    json_bytes
)
plausible_values = st.fixed_dictionaries(
    {
        "access_token": st.one_of(st.text(max_size=20), json_values),
        "expires_in": st.one_of(st.integers(-5, 100_000), st.floats(), json_values),
    },
    optional={
        "token_type": st.one_of(st.sampled_from(["Bearer", "bearer", "BEARER", "DPoP", ""]), json_values),
        "error": st.sampled_from(["invalid_grant", "invalid_scope", "forbidden", "access_denied", "server_error"]),
        "error_description": st.one_of(
            st.sampled_from(["Issue time is after now", "JWT is expired", "not delegated (trace_id: abc-1)"]),
            json_values,
        ),
        "error_uri": st.one_of(st.just("https://maskinporten.no/errors/MP-251"), json_values),
    },
).map(json_bytes)
bodies = st.one_of(
    st.binary(max_size=200),
    json_values.map(json_bytes),
    near_token_responses,
    plausible_values,
    st.sampled_from([b"", b"<html><body>502 Bad Gateway</body></html>", b"\xff\xfe{", b"[" * 5000, b'{"a":' * 5000]),
)
header_text = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
retry_after_values = st.one_of(
    header_text,
    st.floats().map(str),
    st.integers().map(str),
    st.sampled_from(["nan", "inf", "-inf", "1e400", "-1", "0", "Wed, 21 Oct 2015 07:28:00 GMT", "Mon, 99 Foo 99999"]),
    st.floats(min_value=0, max_value=2.5e11).map(lambda seconds: email.utils.formatdate(seconds, usegmt=True)),
)
headers = st.dictionaries(
    st.sampled_from(["Content-Type", "Retry-After", "Date", "WWW-Authenticate", "X-Other"]),
    st.one_of(header_text, retry_after_values, st.binary(max_size=30).filter(lambda raw: b"\r" not in raw)),
    max_size=5,
)
statuses = st.one_of(st.sampled_from([200, 400, 401, 403, 404, 429, 500, 502, 503, 504]), st.integers(100, 999))


def attempt(call: Callable[..., T], *args: object) -> tuple[T | None, MaskinportenError | None]:
    """Call; return (result, None) or (None, the typed error). Any other exception fails the test."""
    try:
        return call(*args), None
    except MaskinportenError as error:
        return None, error


def response(status: int, header_values: dict[str, object], body: bytes) -> httpx.Response:
    return httpx.Response(status, headers=header_values, content=body)


@PROPERTY_SETTINGS
@given(status=statuses, header_values=headers, body=bodies)
@example(status=200, header_values={}, body=b'{"access_token": "t", "expires_in": ' + b"9" * 400 + b"}")
@example(status=200, header_values={}, body=b'{"access_token": "t", "expires_in": 1e999}')
@example(status=200, header_values={}, body=b'{"access_token": "t", "expires_in": NaN}')
@example(status=200, header_values={}, body=b"[" * 5000)
def test_token_response_parsing_gives_a_valid_token_or_an_invalid_response_error(status, header_values, body):
    token, error = attempt(parse_token_response, response(status, header_values, body))
    if error is not None:
        assert isinstance(error, InvalidResponseError) and str(error)
        return
    assert isinstance(token.access_token, str) and token.access_token
    assert isinstance(token.expires_in, float) and 0 < token.expires_in <= 24 * 3600


@PROPERTY_SETTINGS
@given(status=statuses, header_values=headers, body=bodies)
@example(status=503, header_values={"Retry-After": "1e400"}, body=b"")
@example(status=429, header_values={"Retry-After": "Mon, 99 Foo 99999"}, body=b"{}")
@example(status=400, header_values={}, body=b'{"error": "invalid_grant", "error_description": ' + b"[" * 5000)
def test_error_mapping_always_returns_a_typed_error(status, header_values, body):
    error = error_from_response(response(status, header_values, body))
    assert isinstance(error, TokenRequestError)
    assert error.status == status
    assert str(error) and repr(error)
    assert error.retryable == (status >= 500 or status == 429)
    if isinstance(error, ServerError) and hasattr(error, "retry_after") and error.retry_after is not None:
        assert math.isfinite(error.retry_after) and error.retry_after >= 0


@PROPERTY_SETTINGS
@given(date=st.one_of(st.none(), header_text, retry_after_values))
def test_the_grant_clock_reads_any_date_header(date):
    clock = GrantClock()
    clock.observe(date, 1_700_000_000.0, 1_700_000_000.5)
    assert clock.estimated_offset is None or math.isfinite(clock.estimated_offset)
    clock.correct()
    assert math.isfinite(clock.now())


# Configuration parsing

anything = st.one_of(
    json_values,
    st.lists(st.one_of(st.text(max_size=20), st.integers()), max_size=4).map(tuple),
    st.sets(st.text(max_size=5), max_size=3),
    st.binary(max_size=10),
    st.just(object()),
)


@PROPERTY_SETTINGS
@given(value=st.one_of(anything, st.lists(st.text(max_size=30), max_size=4)))
def test_scopes_are_a_tuple_of_clean_strings_or_a_configuration_error(value):
    scopes, error = attempt(validate_scopes, value)
    if error is not None:
        assert isinstance(error, ConfigurationError) and error.field == "scopes"
        return
    assert scopes and all(isinstance(scope, str) and scope and scope.isprintable() for scope in scopes)
    assert not any(character.isspace() for scope in scopes for character in scope)


@PROPERTY_SETTINGS
@given(value=st.one_of(anything, st.text(alphabet=string.digits, min_size=8, max_size=10), st.text(max_size=12)))
def test_orgno_is_valid_or_a_configuration_error(value):
    orgno, error = attempt(validate_orgno, value, "consumer_org")
    if error is not None:
        assert isinstance(error, ConfigurationError) and error.field == "consumer_org"
        return
    assert is_valid_orgno(orgno)


def closed_loopback_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


#: Issuer URLs whose discovery fails at once (a closed loopback port), with arbitrary tails.
unreachable_urls = st.text(max_size=20).map(lambda tail: closed_loopback_url() + "/" + tail)
url_like = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        ["https://", "http://", "https://[", "http://[::1", "https://host:99999/", "https://h/\x00"]
    ).flatmap(lambda start: st.text(max_size=15).map(lambda tail: start + tail)),
)


@PROPERTY_SETTINGS
@given(value=st.one_of(anything, st.text(max_size=40), unreachable_urls))
def test_environment_resolves_or_is_a_configuration_error(value):
    # Only loopback URLs on a closed port are discovered: anything else could reach the network.
    assume(not (isinstance(value, str) and value.startswith(("http://", "https://")) and "127.0.0.1" not in value))
    environment, error = attempt(resolve_environment, value)
    if error is not None:
        assert isinstance(error, ConfigurationError) and error.field in ("environment", "issuer")
        return
    assert isinstance(environment, Environment)


@PROPERTY_SETTINGS
@given(issuer=url_like, token_endpoint=url_like)
@example(issuer="https://[", token_endpoint="https://maskinporten.no/token")
@example(issuer="https://maskinporten.no/", token_endpoint="http://[::1")
def test_an_environment_is_https_or_a_configuration_error(issuer, token_endpoint):
    environment, error = attempt(Environment, issuer, token_endpoint)
    if error is not None:
        assert isinstance(error, ConfigurationError)
        assert error.field in ("environment.issuer", "environment.token_endpoint")
        return
    assert environment.issuer.startswith(("https://", "http://"))


durations = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-5, 10**6),
    st.integers(min_value=10**300, max_value=10**400),
    st.booleans(),
    st.none(),
    st.text(max_size=3),
)


@PROPERTY_SETTINGS
@given(
    attempts=st.one_of(st.integers(-2, 3000), durations),
    deadline=durations,
    backoff=durations,
    max_backoff=durations,
    timeout=durations,
)
def test_a_retry_policy_is_sound_or_a_configuration_error(attempts, deadline, backoff, max_backoff, timeout):
    policy, error = attempt(RetryPolicy, attempts, deadline, backoff, max_backoff, timeout)
    if error is not None:
        assert isinstance(error, ConfigurationError) and error.field.startswith("retry.")
        return
    schedule = policy.start()
    assert 0 < schedule.attempt_timeout() <= max(policy.timeout, 0.001)  # 1 ms at least, to be a timeout at all
    failure = ServerError("boom", status=500)
    for _ in range(min(policy.attempts, 1100)):
        delay, error = attempt(schedule.delay_after, failure)
        if error is not None:
            assert error is failure  # no attempt or no time left: the last error is raised as it is
            break
        assert 0 <= delay <= policy.max_backoff and delay < policy.deadline


@PROPERTY_SETTINGS
@given(
    refresh_window=st.one_of(st.tuples(durations, durations), durations, st.lists(durations, max_size=3)),
    must_refresh_margin=durations,
    min_margin=durations,
    max_margin=durations,
    failure_cooldown=durations,
    expires_in=st.floats(min_value=0.001, max_value=24 * 3600),
)
@example(
    refresh_window=(0.5, 0.7),
    must_refresh_margin=0.1,
    min_margin=0.5,
    max_margin=60.0,
    failure_cooldown=5.0,
    expires_in=3.0,
)
def test_a_refresh_policy_orders_its_deadlines_or_is_a_configuration_error(
    refresh_window, must_refresh_margin, min_margin, max_margin, failure_cooldown, expires_in
):
    policy, error = attempt(
        RefreshPolicy, refresh_window, must_refresh_margin, min_margin, max_margin, failure_cooldown
    )
    if error is not None:
        assert isinstance(error, ConfigurationError) and error.field.startswith("refresh.")
        return
    token = policy.schedule("token", expires_in, 1000.0)
    # With every margin 0 a token is used to its last instant: must_refresh_at may equal expires_at.
    assert 1000.0 < token.refresh_at <= token.must_refresh_at <= token.expires_at == 1000.0 + expires_in


environ_values = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["test", "prod", " PROD ", "", "   ", "nav:a, nav:b", "310539759", "file:///", "pkcs12:///x"]),
    st.sampled_from(["https://[", "C:\\key.pem", "https://api.example.no", "vault-transit://transit/k", "azurekv://x"]),
)
environments = st.dictionaries(
    st.sampled_from(VARIABLES).map(lambda suffix: "MASKINPORTEN_" + suffix), environ_values, max_size=len(VARIABLES)
)


@PROPERTY_SETTINGS
@given(environ=environments)
def test_env_config_reads_each_variable_or_names_it_in_a_configuration_error(environ):
    # ENV values that are URLs would be discovered over the network; the env parser's own checks come first.
    assume(not environ.get("MASKINPORTEN_ENV", "").strip().startswith(("http://", "https://")))
    assume(not any(map(_breaks_urlsplit, environ.values())))  # a known bug in config.py: see the test below
    config = EnvConfig(environ=environ)
    readers = [
        config.environment,
        config.client_id,
        config.scopes,
        config.consumer_org,
        config.resource,
        config.password,
        config.signer,
        lambda: MaskinportenAuth.from_config(config),
    ]
    for read in readers:
        _, error = attempt(read)
        if error is not None:
            assert isinstance(error, ConfigurationError), error
            assert error.field in {config.name(suffix) for suffix in VARIABLES}, error.field


def _breaks_urlsplit(value: str) -> bool:
    try:
        urlsplit(value.strip())
    except ValueError:
        return True
    return False


@pytest.mark.parametrize(("suffix", "read"), [("KEY", EnvConfig.signer), ("RESOURCE", EnvConfig.resource)])
def test_env_config_value_that_urlsplit_rejects_is_a_configuration_error(suffix, read):
    config = EnvConfig(environ={f"MASKINPORTEN_{suffix}": "A://["})
    with pytest.raises(ConfigurationError) as raised:
        read(config)
    assert raised.value.field == f"MASKINPORTEN_{suffix}"


@PROPERTY_SETTINGS
@given(uri=st.one_of(st.text(max_size=40), url_like), kid=st.one_of(st.none(), st.text(max_size=5)))
@example(uri="A://[", kid=None)
def test_a_key_uri_gives_a_signer_or_a_typed_error(uri, kid):
    signer, error = attempt(lambda: signer_from_uri(uri, kid=kid))
    assert error is None or isinstance(error, (ConfigurationError, SigningError)), error
    assert signer is None or isinstance(signer, Signer)
