"""TokenTelemetry: the ``on_event=`` callback that turns token events into OpenTelemetry spans and metrics."""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Iterable, Sized
from importlib.metadata import version

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import SpanKind, Status, StatusCode

from maskinporten_auth import forksafe
from maskinporten_auth.cache import TokenStore
from maskinporten_auth.errors import ConfigurationError, TokenRequestError
from maskinporten_auth.provider import TokenEvent

from . import conventions as names

__all__ = ["INSTRUMENTATION_SCOPE", "TokenTelemetry"]

INSTRUMENTATION_SCOPE = "maskinporten_auth_otel"
"""The instrumentation scope of every span and metric: this package's name (its version goes with it)."""

AttributeValue = str | bool | int | float | tuple[str, ...]
Attributes = dict[str, AttributeValue]


class TokenTelemetry:
    """Spans and metrics for an auth family's tokens: pass it as ``MaskinportenAuth(on_event=...)``.

    Each Maskinporten fetch and each Altinn exchange (an :class:`~maskinporten_auth.AltinnAuth` reports through the
    ``on_event`` of the auth it wraps) becomes a ``CLIENT`` span, ``fetch maskinporten token`` or ``exchange altinn
    token``, with its real duration, in the caller's trace; a failed one has status ``ERROR``, ``error.type`` and the
    MP code. The metrics (names in :mod:`maskinporten_auth_otel.conventions`):

    - ``maskinporten.token.cache.hits`` (counter, ``{hit}``): tokens served from the cache;
    - ``maskinporten.token.fetch.duration`` (histogram, ``s``): every fetch, ``error.type`` on failed ones;
    - ``maskinporten.token.fetch.failures`` (counter, ``{failure}``): by ``error.type`` and MP code;
    - ``maskinporten.token.refusals`` (counter, ``{refusal}``): refusals repeated from memory, with no request;
    - ``maskinporten.token.cache.count`` (observable gauge, ``{token}``): tokens in the caches given to
      :meth:`watch_cache`.

    Every span and data point carries ``maskinporten.token.source`` (``maskinporten`` or ``altinn``). Nothing
    names the integration or a customer unless ``record_identities`` is set: then ``maskinporten.client_id``,
    ``maskinporten.scopes``, ``maskinporten.consumer_org`` and ``maskinporten.systemuser_org`` are added, and a
    failed fetch's span gets the exception's message (which may name the customer). Tokens and grants are never
    recorded.

    A cache hit costs one counter add with an attribute set made once; ``record_identities`` builds one per hit.

    Args:
        tracer_provider: where spans go; the global tracer provider by default.
        meter_provider: where metrics go; the global meter provider by default.
        record_identities: add the client id, scopes and customer organisation numbers to every span and data point
            (one time series per customer).
    """

    def __init__(
        self,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
        record_identities: bool = False,
    ) -> None:
        if tracer_provider is not None and not isinstance(tracer_provider, trace.TracerProvider):
            raise ConfigurationError(
                "tracer_provider", f"must be an OpenTelemetry TracerProvider, got {type(tracer_provider).__name__}"
            )
        if meter_provider is not None and not isinstance(meter_provider, metrics.MeterProvider):
            raise ConfigurationError(
                "meter_provider", f"must be an OpenTelemetry MeterProvider, got {type(meter_provider).__name__}"
            )
        if not isinstance(record_identities, bool):
            raise ConfigurationError("record_identities", f"must be True or False, got {record_identities!r}")
        self.record_identities = record_identities
        scope_version = version("maskinporten-auth-otel")
        self._tracer = trace.get_tracer(INSTRUMENTATION_SCOPE, scope_version, tracer_provider)
        meter = metrics.get_meter(INSTRUMENTATION_SCOPE, scope_version, meter_provider)
        self._hits = meter.create_counter(
            names.CACHE_HITS, unit="{hit}", description="Tokens served from the cache, with no fetch."
        )
        self._duration = meter.create_histogram(
            names.FETCH_DURATION,
            unit="s",
            description="Duration of token fetches: signing, requests and retries.",
            explicit_bucket_boundaries_advisory=names.FETCH_DURATION_BUCKETS,
        )
        self._failures = meter.create_counter(
            names.FETCH_FAILURES, unit="{failure}", description="Token fetches that failed."
        )
        self._refusals = meter.create_counter(
            names.REFUSALS,
            unit="{refusal}",
            description="Calls answered with a refusal remembered from a moment ago, with no request.",
        )
        self._caches: weakref.WeakSet[Sized] = weakref.WeakSet()
        self._caches_lock = threading.Lock()  # the metric reader's thread copies the set while another adds
        meter.create_observable_gauge(
            names.CACHE_TOKENS,
            callbacks=[self._observe_caches],
            unit="{token}",
            description="Tokens held in the watched caches.",
        )
        self._by_source: dict[str, Attributes] = {}
        forksafe.register(self)

    def watch_cache(self, cache: TokenStore) -> None:
        """Count the tokens in ``cache`` (such as ``auth.cache``) in ``maskinporten.token.cache.count``.

        Views and the :class:`~maskinporten_auth.AltinnAuth` of a family share its cache: watch it once. A cache
        is counted while it lives; one that cannot tell its size (no ``len()``) is refused.
        """
        if not isinstance(cache, TokenStore) or not isinstance(cache, Sized):
            raise ConfigurationError("cache", f"must be a TokenStore that has a len(), got {type(cache).__name__}")
        with self._caches_lock:
            self._caches.add(cache)

    def __call__(self, event: TokenEvent) -> None:
        """Record ``event``: the callback ``on_event=`` calls."""
        if event.kind == "cache_hit":
            self._hits.add(1, self._attributes(event))
        elif event.kind == "refused":
            self._refusals.add(1, self._with_error(event))
        elif event.kind in ("fetched", "fetch_failed", "refresh_failed"):
            self._fetch_ended(event)

    def _fetch_ended(self, event: TokenEvent) -> None:
        """A span from the fetch's start to now, and its duration and failure in the metrics."""
        end = time.time_ns()
        attributes = self._with_error(event)
        if event.kind == "refresh_failed":
            attributes[names.FALLBACK] = True
        if event.duration is not None:  # None: the failure came before the fetch started
            self._duration.record(event.duration, attributes)
        if event.error is not None:
            self._failures.add(1, attributes)
        span_attributes = dict(attributes)
        if event.expires_in is not None:
            span_attributes[names.TOKEN_EXPIRES_IN] = int(event.expires_in)
        if isinstance(event.error, TokenRequestError) and event.error.status is not None:
            span_attributes[names.HTTP_STATUS] = event.error.status
        start = end - round((event.duration or 0.0) * 1e9)
        span = self._tracer.start_span(
            names.span_name(event.source), kind=SpanKind.CLIENT, attributes=span_attributes, start_time=start
        )
        if event.error is not None:
            span.set_status(Status(StatusCode.ERROR, type(event.error).__qualname__))
            if self.record_identities:
                span.record_exception(event.error)
        span.end(end_time=end)

    def _attributes(self, event: TokenEvent) -> Attributes:
        """The event's attribute set: one made once per source, unless identities are recorded."""
        if not self.record_identities:
            attributes = self._by_source.get(event.source)
            if attributes is None:
                attributes = self._by_source.setdefault(event.source, {names.SOURCE: event.source})
            return attributes
        identities: Attributes = {
            names.SOURCE: event.source,
            names.CLIENT_ID: event.client_id,
            names.SCOPES: event.scopes,
        }
        if event.consumer_org is not None:
            identities[names.CONSUMER_ORG] = event.consumer_org
        if event.systemuser_org is not None:
            identities[names.SYSTEMUSER_ORG] = event.systemuser_org
        return identities

    def _with_error(self, event: TokenEvent) -> Attributes:
        """A new attribute set: the event's, and ``error.type`` and the MP code of its error."""
        attributes = dict(self._attributes(event))
        if event.error is not None:
            attributes[names.ERROR_TYPE] = type(event.error).__qualname__
            code = getattr(event.error, "code", None)
            if code:
                attributes[names.ERROR_CODE] = code
        return attributes

    def _after_fork(self) -> None:
        self._caches_lock = threading.Lock()  # the parent's metric reader may have held it

    def _observe_caches(self, options: CallbackOptions) -> Iterable[Observation]:
        with self._caches_lock:
            caches = list(self._caches)
        if not caches:
            return []
        return [Observation(sum(len(cache) for cache in caches))]
