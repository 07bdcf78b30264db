"""No client id, scope, organisation number or token in what is exported, unless identities are asked for."""

from __future__ import annotations

import pytest
from maskinporten_auth_otel import TokenTelemetry
from maskinporten_auth_otel.conventions import IDENTITY_ATTRIBUTES

from maskinporten_auth import AltinnAuth
from maskinporten_auth.errors import DelegationError

from .conftest import CUSTOMER, SCOPE, STRANGER, SUPPLIER


def run_every_kind_of_event(auth, emulator) -> list[str]:
    """Fetches, hits, a refusal and its repeat, a system user and an Altinn exchange; returns the tokens issued."""
    tokens = [auth.get_token(), auth.get_token()]
    tokens += [auth.with_consumer_org(CUSTOMER).get_token() for _ in range(2)]
    for _ in range(2):
        with pytest.raises(DelegationError):
            auth.with_consumer_org(STRANGER).get_token()
    altinn = AltinnAuth(auth.with_systemuser(CUSTOMER), environment=emulator.url)
    tokens += [altinn.get_token(), altinn.get_token(), auth.with_systemuser(CUSTOMER).get_token()]
    return tokens


def exported_text(sdk) -> str:
    """Everything the SDK would export, as JSON: spans (attributes, events, status) and metric data points."""
    return "\n".join([*(span.to_json() for span in sdk.spans()), sdk.metric_reader.get_metrics_data().to_json()])


def test_by_default_no_identity_or_token_is_in_any_span_or_metric(
    otel_auth, otel_sdk, otel_client, maskinporten_emulator
):
    telemetry = TokenTelemetry(tracer_provider=otel_sdk.tracer_provider, meter_provider=otel_sdk.meter_provider)
    auth = otel_auth(telemetry)
    telemetry.watch_cache(auth.cache)
    tokens = run_every_kind_of_event(auth, maskinporten_emulator)
    text = exported_text(otel_sdk)
    assert "fetch maskinporten token" in text and "exchange altinn token" in text and "MP-251" in text
    for secret in [otel_client, SUPPLIER, CUSTOMER, STRANGER, SCOPE, *tokens]:
        assert secret not in text
    keys = {key for span in otel_sdk.spans() for key in span.attributes}
    keys |= {key for name in otel_sdk.metrics() for points in otel_sdk.points(name) for key, _ in points}
    assert not keys & set(IDENTITY_ATTRIBUTES)


def test_record_identities_adds_client_id_scopes_and_customers_but_never_a_token(
    otel_auth, otel_sdk, otel_client, maskinporten_emulator
):
    telemetry = TokenTelemetry(
        tracer_provider=otel_sdk.tracer_provider, meter_provider=otel_sdk.meter_provider, record_identities=True
    )
    tokens = run_every_kind_of_event(otel_auth(telemetry), maskinporten_emulator)
    by_customer = {
        (span.attributes.get("maskinporten.consumer_org"), span.attributes.get("maskinporten.systemuser_org")): span
        for span in otel_sdk.spans()
        if span.attributes["maskinporten.token.source"] == "maskinporten"
    }
    assert set(by_customer) == {(None, None), (CUSTOMER, None), (STRANGER, None), (None, CUSTOMER)}
    for span in otel_sdk.spans():
        assert span.attributes["maskinporten.client_id"] == otel_client
        assert span.attributes["maskinporten.scopes"] == (SCOPE,)
    (exception,) = by_customer[STRANGER, None].events
    assert exception.name == "exception" and STRANGER in exception.attributes["exception.message"]
    hits = otel_sdk.points("maskinporten.token.cache.hits")
    assert {dict(attributes).get("maskinporten.consumer_org") for attributes in hits} == {None, CUSTOMER}
    text = exported_text(otel_sdk)
    for token in tokens:
        assert token not in text
