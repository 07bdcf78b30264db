"""The pytest plugin (entry point ``pytest11``): the ``maskinporten_emulator`` fixture.

The emulator and ``cryptography`` are imported inside the fixtures so that loading the plugin costs nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import rsa

    from .emulator import MaskinportenEmulator


@pytest.fixture(scope="session")
def maskinporten_emulator_signing_key() -> rsa.RSAPrivateKey:
    """The key that signs the access tokens of every ``maskinporten_emulator`` in the session (made once)."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def maskinporten_emulator(maskinporten_emulator_signing_key: rsa.RSAPrivateKey) -> Iterator[MaskinportenEmulator]:
    """A running :class:`~maskinporten_auth.testing.MaskinportenEmulator`, stopped after the test."""
    from .emulator import MaskinportenEmulator

    with MaskinportenEmulator(signing_key=maskinporten_emulator_signing_key) as emulator:
        yield emulator
