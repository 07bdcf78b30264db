"""What maskinporten-auth-otel adds to a cache hit: ``get_token()`` with and without ``TokenTelemetry``.

Variants, timed in interleaved rounds (the order rotates every round) on one warm auth family each:

- ``no on_event``: the baseline;
- ``on_event=noop``: the provider's own cost of an event (one ``TokenEvent`` per hit);
- ``TokenTelemetry``: the OpenTelemetry SDK's meter and tracer providers, an in-memory metric reader.

And apart, the telemetry's handling of one hit event against a bare ``counter.add(1, attributes)`` on the same SDK:
what the integration costs beyond the counter add it has to make.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from benchkit import TIMES, Results, Row, Setup, median
from maskinporten_auth_otel import TokenTelemetry
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider

from maskinporten_auth import TokenEvent

SECTION = "otel"
#: The telemetry's handling of a hit, at most this times a bare counter add.
TARGET_RATIO = 1.25


def _per_call(call: Callable[[], object], calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        call()
    return (time.perf_counter() - started) / calls


def _interleaved(variants: dict[str, Callable[[], object]], rounds: int, calls: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for index in range(rounds):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(_per_call(variants[name], calls))
    return samples


def _ratio(samples: dict[str, list[float]], name: str, baseline: str) -> float:
    return median([value / base for value, base in zip(samples[name], samples[baseline], strict=True)])


def run(setup: Setup, results: Results, *, quick: bool = False) -> None:
    rounds, calls = (5, 2_000) if quick else (31, 20_000)
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    telemetry = TokenTelemetry(tracer_provider=TracerProvider(), meter_provider=meter_provider)
    auths = {
        "no on_event": setup.auth(),
        "on_event=noop": setup.auth(on_event=lambda event: None),
        "TokenTelemetry": setup.auth(on_event=telemetry),
    }
    for auth in auths.values():
        auth.get_token()  # the fetch; every later call is a hit
    samples = _interleaved({name: auth.get_token for name, auth in auths.items()}, rounds, calls)
    baseline = "no on_event"
    for name in auths:
        value = median(samples[name]) * 1e9
        ratio = None if name == baseline else _ratio(samples, name, baseline)
        results.add(Row(SECTION, f"get_token() cache hit, {name}", value, "ns", ratio, baseline if ratio else ""))

    hit = TokenEvent("cache_hit", setup.client_id, auths[baseline].scopes, None)
    counter = meter_provider.get_meter("bench").create_counter("bench.hits", unit="{hit}")
    attributes = {"maskinporten.token.source": "maskinporten"}
    handling = _interleaved(
        {"counter.add": lambda: counter.add(1, attributes), "TokenTelemetry(hit)": lambda: telemetry(hit)},
        rounds,
        calls,
    )
    ratio = _ratio(handling, "TokenTelemetry(hit)", "counter.add")
    results.add(
        Row(
            SECTION,
            "TokenTelemetry handling a hit event",
            median(handling["TokenTelemetry(hit)"]) * 1e9,
            "ns",
            ratio,
            "a bare counter.add",
            target=f"\u2264 {TARGET_RATIO}{TIMES}",
            passed=ratio <= TARGET_RATIO,
        )
    )
