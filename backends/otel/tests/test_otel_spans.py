"""Token fetches and Altinn exchanges become spans with the right name, kind, status, attributes and duration."""

from __future__ import annotations

import asyncio
import time
from importlib.metadata import version

import pytest
from maskinporten_auth_otel import INSTRUMENTATION_SCOPE, TokenTelemetry
from opentelemetry.trace import SpanKind, StatusCode

from maskinporten_auth import AltinnAuth, TokenEvent
from maskinporten_auth.errors import DelegationError

from .conftest import CUSTOMER, STRANGER


def test_a_fetch_is_one_client_span_lasting_as_long_as_the_fetch(otel_auth, otel_telemetry, otel_sdk, otel_events):
    auth = otel_auth(otel_telemetry)
    auth.get_token()
    auth.get_token()  # a cache hit: no span
    (span,) = otel_sdk.spans()
    (fetched,) = [event for event in otel_events if event.kind == "fetched"]
    assert span.name == "fetch maskinporten token"
    assert span.kind is SpanKind.CLIENT
    assert span.status.status_code is StatusCode.UNSET
    assert dict(span.attributes) == {"maskinporten.token.source": "maskinporten", "maskinporten.token.expires_in": 120}
    assert span.end_time - span.start_time == round(fetched.duration * 1e9)
    assert span.instrumentation_scope.name == INSTRUMENTATION_SCOPE == "maskinporten_auth_otel"
    assert span.instrumentation_scope.version == version("maskinporten-auth-otel")


def test_the_span_is_a_child_of_the_callers_span(otel_auth, otel_telemetry, otel_sdk):
    tracer = otel_sdk.tracer_provider.get_tracer("app")
    with tracer.start_as_current_span("handle request") as parent:
        otel_auth(otel_telemetry).get_token()
    (fetch,) = [span for span in otel_sdk.spans() if span.name == "fetch maskinporten token"]
    assert fetch.parent is not None and fetch.parent.span_id == parent.get_span_context().span_id
    assert fetch.context.trace_id == parent.get_span_context().trace_id


def test_an_async_callers_fetch_runs_in_a_worker_thread_and_is_still_its_child(otel_auth, otel_telemetry, otel_sdk):
    tracer = otel_sdk.tracer_provider.get_tracer("app")
    auth = otel_auth(otel_telemetry)

    async def handle_request() -> int:
        with tracer.start_as_current_span("handle request") as parent:
            await auth.aget_token()
            return parent.get_span_context().span_id

    parent_id = asyncio.run(handle_request())
    # The worker wakes its waiters first and reports the fetch after: wait for the span.
    deadline = time.monotonic() + 10
    while len(otel_sdk.spans()) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    (fetch,) = [span for span in otel_sdk.spans() if span.name == "fetch maskinporten token"]
    assert fetch.parent is not None and fetch.parent.span_id == parent_id


def test_a_refused_fetch_has_error_status_type_and_mp_code(otel_auth, otel_telemetry, otel_sdk):
    auth = otel_auth(otel_telemetry).with_consumer_org(STRANGER)
    with pytest.raises(DelegationError):
        auth.get_token()
    with pytest.raises(DelegationError):
        auth.get_token()  # the remembered refusal: counted, no new fetch and no span
    (span,) = otel_sdk.spans()
    assert span.name == "fetch maskinporten token"
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "DelegationError"
    assert dict(span.attributes) == {
        "maskinporten.token.source": "maskinporten",
        "error.type": "DelegationError",
        "maskinporten.error.code": "MP-251",
        "http.response.status_code": 403,
    }
    assert span.events == ()  # the message names the customer: recorded only with record_identities


def test_an_altinn_exchange_is_a_span_of_its_own(otel_auth, otel_telemetry, otel_sdk, maskinporten_emulator):
    auth = AltinnAuth(otel_auth(otel_telemetry).with_systemuser(CUSTOMER), environment=maskinporten_emulator.url)
    auth.get_token()
    auth.get_token()
    fetch, exchange = otel_sdk.spans()  # the Maskinporten token the exchange needs comes first
    assert (fetch.name, exchange.name) == ("fetch maskinporten token", "exchange altinn token")
    assert exchange.kind is SpanKind.CLIENT
    assert exchange.attributes["maskinporten.token.source"] == "altinn"
    # The Maskinporten fetch ran within the exchange: it ended first and took less time.
    assert fetch.end_time <= exchange.end_time
    assert fetch.end_time - fetch.start_time < exchange.end_time - exchange.start_time


def test_a_failed_early_refresh_is_an_error_span_marked_as_hidden_from_callers(otel_sdk):
    telemetry = TokenTelemetry(tracer_provider=otel_sdk.tracer_provider, meter_provider=otel_sdk.meter_provider)
    telemetry(
        TokenEvent(
            "refresh_failed", "client", ("scope",), None, duration=0.25, error=DelegationError("no", code="MP-251")
        )
    )
    (span,) = otel_sdk.spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["maskinporten.token.fallback"] is True
    assert span.end_time - span.start_time == 250_000_000
