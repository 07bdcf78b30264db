"""Test support: a local Maskinporten emulator and its pytest fixture ``maskinporten_emulator``."""

from .emulator import GrantRecord, MaskinportenEmulator
from .faults import Fault
from .registry import ClientKey

__all__ = ["ClientKey", "Fault", "GrantRecord", "MaskinportenEmulator"]
