"""The pytest plugin (entry point ``pytest11``): the ``maskinporten_emulator`` fixture.

The emulator is imported inside the fixture so that loading the plugin costs nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .emulator import MaskinportenEmulator


@pytest.fixture
def maskinporten_emulator() -> Iterator[MaskinportenEmulator]:
    """A running :class:`~maskinporten_auth.testing.MaskinportenEmulator`, stopped after the test."""
    from .emulator import MaskinportenEmulator

    with MaskinportenEmulator() as emulator:
        yield emulator
