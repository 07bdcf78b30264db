"""KeyExpiryGauge: the ``on_event=`` of an :class:`~maskinporten_auth.selfservice.ExpiryWatch`, as a gauge."""

from __future__ import annotations

import datetime
import threading
from collections.abc import Iterable
from importlib.metadata import version

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from maskinporten_auth import forksafe
from maskinporten_auth.errors import ConfigurationError
from maskinporten_auth.selfservice import KeyExpiry

from . import conventions as names
from .telemetry import INSTRUMENTATION_SCOPE

__all__ = ["KeyExpiryGauge"]


class KeyExpiryGauge:
    """``maskinporten.key.expiry`` (observable gauge, ``s``): seconds until each watched key or certificate expires.

    Pass it as ``ExpiryWatch(on_event=KeyExpiryGauge())``; every
    :meth:`~maskinporten_auth.selfservice.ExpiryWatch.check` updates the expiries, and each collection reports the
    seconds left from then (negative once expired). Each data
    point has ``maskinporten.key.kid``, ``maskinporten.key.source`` (``key`` or ``certificate``) and
    ``maskinporten.key.signing``; an alert on ``value < 7 * 86400`` covers the 7-day warning. A kid is not a secret.

    Args:
        meter_provider: where the gauge goes; the global meter provider by default.
    """

    def __init__(self, *, meter_provider: metrics.MeterProvider | None = None) -> None:
        if meter_provider is not None and not isinstance(meter_provider, metrics.MeterProvider):
            raise ConfigurationError(
                "meter_provider", f"must be an OpenTelemetry MeterProvider, got {type(meter_provider).__name__}"
            )
        meter = metrics.get_meter(INSTRUMENTATION_SCOPE, version("maskinporten-auth-otel"), meter_provider)
        self._expiries: dict[tuple[str, str | None, str], KeyExpiry] = {}
        self._lock = threading.Lock()  # the metric reader's thread reads while a check writes
        meter.create_observable_gauge(
            names.KEY_EXPIRY,
            callbacks=[self._observe],
            unit="s",
            description="Seconds until the key or certificate expires (negative once it has).",
        )
        forksafe.register(self)

    def __call__(self, expiry: KeyExpiry) -> None:
        """Record ``expiry``: the callback ``on_event=`` calls."""
        with self._lock:
            self._expiries[(expiry.source, expiry.client_id, expiry.kid)] = expiry

    def forget(self, kid: str) -> None:
        """Stop reporting the key ``kid`` (after it was removed from the integration)."""
        with self._lock:
            self._expiries = {key: value for key, value in self._expiries.items() if key[2] != kid}

    def _after_fork(self) -> None:
        self._lock = threading.Lock()

    def _observe(self, options: CallbackOptions) -> Iterable[Observation]:
        now = datetime.datetime.now(datetime.timezone.utc)
        with self._lock:
            expiries = list(self._expiries.values())
        return [
            Observation(
                expiry.seconds_left(now),
                {names.KEY_KID: expiry.kid, names.KEY_SOURCE: expiry.source, names.KEY_SIGNING: expiry.signing},
            )
            for expiry in expiries
        ]
