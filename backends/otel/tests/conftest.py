"""The OpenTelemetry SDK with in-memory exporters, and an integration on the emulator to observe.

Fixture names start with ``otel_`` because every backend's tests run in one pytest session.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from maskinporten_auth_otel import TokenTelemetry
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, Metric
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from maskinporten_auth import LocalKeySigner, MaskinportenAuth, TokenEvent
from maskinporten_auth.testing import MaskinportenEmulator

SUPPLIER = "313042995"
#: A scope with the supplier's organisation number in it, as some APIs name theirs.
SCOPE = f"test:{SUPPLIER}/reports"
CUSTOMER = "310539759"  # has delegated SCOPE and approved a system user
STRANGER = "314180313"  # has delegated nothing
SYSTEM = f"{SUPPLIER}_reports"


@dataclass
class Sdk:
    """An OpenTelemetry SDK whose spans and metrics stay in memory for the test to read."""

    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    span_exporter: InMemorySpanExporter
    metric_reader: InMemoryMetricReader

    def spans(self) -> list[ReadableSpan]:
        return list(self.span_exporter.get_finished_spans())

    def metrics(self) -> dict[str, Metric]:
        """Every metric collected now, by name."""
        data = self.metric_reader.get_metrics_data()
        if data is None:
            return {}
        return {
            metric.name: metric
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
        }

    def points(self, name: str) -> dict[frozenset[tuple[str, Any]], Any]:
        """The data points of metric ``name`` by attribute set (a list value becomes a tuple)."""
        metric = self.metrics().get(name)
        if metric is None:
            return {}
        return {
            frozenset(
                (key, tuple(value) if isinstance(value, list) else value) for key, value in point.attributes.items()
            ): point
            for point in metric.data.data_points
        }


@pytest.fixture
def otel_sdk() -> Iterator[Sdk]:
    span_exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(span_exporter))
    metric_reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[metric_reader])
    yield Sdk(tracer_provider, meter_provider, span_exporter, metric_reader)
    tracer_provider.shutdown()
    meter_provider.shutdown()


@pytest.fixture
def otel_telemetry(otel_sdk: Sdk) -> TokenTelemetry:
    return TokenTelemetry(tracer_provider=otel_sdk.tracer_provider, meter_provider=otel_sdk.meter_provider)


@pytest.fixture(scope="session")
def otel_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def otel_client(maskinporten_emulator: MaskinportenEmulator, otel_key: rsa.RSAPrivateKey) -> str:
    """A new integration of SUPPLIER for SCOPE, delegated by CUSTOMER, whose system user CUSTOMER approved."""
    client_id = f"client-{uuid.uuid4()}"
    maskinporten_emulator.register_client(client_id, orgno=SUPPLIER, scopes=[SCOPE], keys={"k1": otel_key.public_key()})
    maskinporten_emulator.delegate(CUSTOMER, SUPPLIER, SCOPE)
    maskinporten_emulator.add_systemuser(CUSTOMER, client_id, system_id=SYSTEM)
    return client_id


@pytest.fixture
def otel_events() -> list[TokenEvent]:
    """The events the auth gave the telemetry, for comparing durations."""
    return []


@pytest.fixture
def otel_auth(
    maskinporten_emulator: MaskinportenEmulator,
    otel_key: rsa.RSAPrivateKey,
    otel_client: str,
    otel_events: list[TokenEvent],
) -> Callable[[Callable[[TokenEvent], None]], MaskinportenAuth]:
    """Build the integration's auth with ``on_event`` given; every event is also kept in ``otel_events``."""

    def make(on_event: Callable[[TokenEvent], None], **options: Any) -> MaskinportenAuth:
        def record(event: TokenEvent) -> None:
            otel_events.append(event)
            on_event(event)

        return MaskinportenAuth(
            otel_client,
            SCOPE,
            LocalKeySigner(otel_key, kid="k1"),
            environment=maskinporten_emulator.environment,
            on_event=record,
            **options,
        )

    return make
