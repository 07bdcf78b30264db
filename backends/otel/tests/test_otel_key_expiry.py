"""maskinporten.key.expiry: the seconds left on each watched key, fed by ExpiryWatch against the emulator."""

from __future__ import annotations

import time

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from maskinporten_auth_otel import KeyExpiryGauge
from maskinporten_auth_otel import conventions as names

from maskinporten_auth import LocalKeySigner
from maskinporten_auth.errors import ConfigurationError
from maskinporten_auth.selfservice import ExpiryWatch
from maskinporten_auth.testing import MaskinportenEmulator
from maskinporten_auth.testing.rotation import RotationRig

from .conftest import Sdk


def test_the_gauge_reports_seconds_left_by_kid(maskinporten_emulator: MaskinportenEmulator, otel_sdk: Sdk) -> None:
    signer = LocalKeySigner(rsa.generate_private_key(public_exponent=65537, key_size=2048), kid="old")
    rig = RotationRig.create(maskinporten_emulator, signer)
    in_ten_days = int(time.time()) + 10 * 86400
    soon = LocalKeySigner(rsa.generate_private_key(public_exponent=65537, key_size=2048), kid="soon")
    rig.api.add_key(rig.client_id, {**soon.public_jwk(), "exp": in_ten_days})
    gauge = KeyExpiryGauge(meter_provider=otel_sdk.meter_provider)
    ExpiryWatch(signer, api=rig.api, client_id=rig.client_id, on_event=gauge).check()
    points = {dict(attributes)[names.KEY_KID]: point for attributes, point in otel_sdk.points(names.KEY_EXPIRY).items()}
    assert set(points) == {"old", "soon"}
    assert in_ten_days - time.time() - 5 < points["soon"].value <= in_ten_days - time.time() + 1
    assert points["old"].value > 364 * 86400
    assert dict(next(iter(otel_sdk.points(names.KEY_EXPIRY))))[names.KEY_SOURCE] == "key"
    signing = {
        dict(attributes)[names.KEY_KID]: dict(attributes)[names.KEY_SIGNING]
        for attributes in otel_sdk.points(names.KEY_EXPIRY)
    }
    assert signing == {"old": True, "soon": False}
    gauge.forget("soon")
    assert {dict(attributes)[names.KEY_KID] for attributes in otel_sdk.points(names.KEY_EXPIRY)} == {"old"}
    assert otel_sdk.metrics()[names.KEY_EXPIRY].unit == "s"
    rig.close()


def test_a_meter_provider_of_another_kind_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="meter_provider"):
        KeyExpiryGauge(meter_provider=object())  # type: ignore[arg-type]
