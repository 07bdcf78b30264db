"""OpenTelemetry spans and metrics for maskinporten-auth: ``MaskinportenAuth(on_event=TokenTelemetry())``."""

from .expiry import KeyExpiryGauge
from .telemetry import INSTRUMENTATION_SCOPE, TokenTelemetry

__all__ = ["INSTRUMENTATION_SCOPE", "KeyExpiryGauge", "TokenTelemetry"]
