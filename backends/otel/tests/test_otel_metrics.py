"""The metrics: names, units, kinds, attribute sets and values, after a real integration's calls to the emulator."""

from __future__ import annotations

import os
import signal
import time
from importlib.metadata import version

import pytest
from maskinporten_auth_otel import TokenTelemetry
from maskinporten_auth_otel.conventions import FETCH_DURATION_BUCKETS
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Histogram,
    InMemoryMetricReader,
    Sum,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from maskinporten_auth import TokenCache, TokenEvent
from maskinporten_auth.errors import ConfigurationError, DelegationError

from .conftest import CUSTOMER, STRANGER

MAIN = frozenset({("maskinporten.token.source", "maskinporten")})
REFUSED = MAIN | {("error.type", "DelegationError"), ("maskinporten.error.code", "MP-251")}


def test_cache_hits_count_the_tokens_served_from_the_cache(otel_auth, otel_telemetry, otel_sdk):
    auth = otel_auth(otel_telemetry)
    for _ in range(4):
        auth.get_token()  # one fetch, then three hits
    hits = otel_sdk.metrics()["maskinporten.token.cache.hits"]
    assert hits.unit == "{hit}"
    assert isinstance(hits.data, Sum) and hits.data.is_monotonic
    assert hits.data.aggregation_temporality is AggregationTemporality.CUMULATIVE
    assert {attributes: point.value for attributes, point in otel_sdk.points(hits.name).items()} == {MAIN: 3}


def test_fetch_duration_is_a_histogram_in_seconds_with_explicit_buckets(
    otel_auth, otel_telemetry, otel_sdk, otel_events
):
    auth = otel_auth(otel_telemetry)
    auth.get_token()
    auth.with_consumer_org(CUSTOMER).get_token()
    duration = otel_sdk.metrics()["maskinporten.token.fetch.duration"]
    assert duration.unit == "s"
    assert isinstance(duration.data, Histogram)
    (point,) = otel_sdk.points(duration.name).values()
    assert tuple(point.explicit_bounds) == FETCH_DURATION_BUCKETS
    assert point.count == 2
    assert point.sum == pytest.approx(sum(event.duration for event in otel_events if event.kind == "fetched"))


def test_failures_count_by_error_type_and_mp_code_and_refusals_apart(otel_auth, otel_telemetry, otel_sdk):
    auth = otel_auth(otel_telemetry)
    stranger = auth.with_consumer_org(STRANGER)
    for _ in range(3):
        with pytest.raises(DelegationError):
            stranger.get_token()  # one refusal from Maskinporten, then twice from memory
    auth.get_token()
    failures = otel_sdk.metrics()["maskinporten.token.fetch.failures"]
    assert failures.unit == "{failure}"
    assert {attributes: point.value for attributes, point in otel_sdk.points(failures.name).items()} == {REFUSED: 1}
    refusals = otel_sdk.metrics()["maskinporten.token.refusals"]
    assert refusals.unit == "{refusal}"
    assert {attributes: point.value for attributes, point in otel_sdk.points(refusals.name).items()} == {REFUSED: 2}
    durations = otel_sdk.points("maskinporten.token.fetch.duration")
    assert {attributes: point.count for attributes, point in durations.items()} == {MAIN: 1, REFUSED: 1}


def test_tokens_in_cache_is_a_gauge_of_the_watched_caches(otel_auth, otel_telemetry, otel_sdk):
    auth = otel_auth(otel_telemetry)
    assert "maskinporten.token.cache.count" not in otel_sdk.metrics()  # nothing watched yet
    otel_telemetry.watch_cache(auth.cache)
    otel_telemetry.watch_cache(auth.with_consumer_org(CUSTOMER).cache)  # the same cache: counted once
    auth.get_token()
    auth.with_consumer_org(CUSTOMER).get_token()
    auth.with_systemuser(CUSTOMER).get_token()
    gauge = otel_sdk.metrics()["maskinporten.token.cache.count"]
    assert gauge.unit == "{token}"
    assert isinstance(gauge.data, Gauge)
    assert [point.value for point in gauge.data.data_points] == [3]
    auth.cache.clear()
    assert [point.value for point in otel_sdk.metrics()[gauge.name].data.data_points] == [0]


def test_every_metric_follows_the_naming_conventions(otel_auth, otel_telemetry, otel_sdk):
    auth = otel_auth(otel_telemetry, cache=TokenCache())
    otel_telemetry.watch_cache(auth.cache)
    auth.get_token()
    auth.get_token()
    with pytest.raises(DelegationError):
        auth.with_consumer_org(STRANGER).get_token()
    with pytest.raises(DelegationError):
        auth.with_consumer_org(STRANGER).get_token()
    data = otel_sdk.metric_reader.get_metrics_data()
    ((scope_metrics,),) = [resource.scope_metrics for resource in data.resource_metrics]
    assert scope_metrics.scope.name == "maskinporten_auth_otel"
    assert scope_metrics.scope.version == version("maskinporten-auth-otel")
    names = {metric.name for metric in scope_metrics.metrics}
    assert names == {
        "maskinporten.token.cache.hits",
        "maskinporten.token.cache.count",
        "maskinporten.token.fetch.duration",
        "maskinporten.token.fetch.failures",
        "maskinporten.token.refusals",
    }
    for metric in scope_metrics.metrics:
        assert metric.name == metric.name.lower() and not metric.name.endswith(("_total", ".total", "_seconds"))
        assert metric.description
        assert metric.unit == "s" or (metric.unit.startswith("{") and metric.unit.endswith("}"))


def test_the_global_providers_serve_even_when_set_after_the_telemetry_was_made():
    telemetry = TokenTelemetry()
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    if trace.get_tracer_provider() is not tracer_provider:
        pytest.skip("another test of this process set the global providers first")
    telemetry(TokenEvent("fetched", "client", ("scope",), None, duration=0.1, expires_in=120))
    assert [span.name for span in spans.get_finished_spans()] == ["fetch maskinporten token"]
    names = [m.name for r in reader.get_metrics_data().resource_metrics for s in r.scope_metrics for m in s.metrics]
    assert names == ["maskinporten.token.fetch.duration"]


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"tracer_provider": "otlp"}, "tracer_provider"),
        ({"meter_provider": MeterProvider}, "meter_provider"),
        ({"record_identities": "yes"}, "record_identities"),
    ],
)
def test_bad_configuration_fails_at_construction_naming_the_field(options, field):
    with pytest.raises(ConfigurationError) as raised:
        TokenTelemetry(**options)
    assert raised.value.field == field


def test_watch_cache_refuses_what_is_not_a_token_cache(otel_telemetry):
    with pytest.raises(ConfigurationError) as raised:
        otel_telemetry.watch_cache({})
    assert raised.value.field == "cache"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork on this platform")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Python 3.12+ warns about fork with threads
def test_a_child_forked_while_the_caches_were_being_counted_counts_its_own(otel_telemetry, otel_sdk):
    cache = TokenCache()
    otel_telemetry.watch_cache(cache)
    with otel_telemetry._caches_lock:  # as the parent's metric reader holds it while it counts
        pid = os.fork()
        if pid == 0:
            points = otel_sdk.metrics()["maskinporten.token.cache.count"].data.data_points
            os._exit(0 if [point.value for point in points] == [0] else 1)
    deadline = time.monotonic() + 20
    while (waited := os.waitpid(pid, os.WNOHANG)) == (0, 0) and time.monotonic() < deadline:
        time.sleep(0.01)
    if waited == (0, 0):
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert waited[0] == pid and os.waitstatus_to_exitcode(waited[1]) == 0
