"""Test support: a local Maskinporten emulator, its pytest fixture ``maskinporten_emulator``, and loop checks."""

from .certificates import issue_certificate_chain
from .emulator import GrantRecord, MaskinportenEmulator
from .faults import Fault
from .loop import longest_stall, with_added_latency
from .orgnrs import organisation_numbers
from .registry import ClientKey

__all__ = [
    "ClientKey",
    "Fault",
    "GrantRecord",
    "MaskinportenEmulator",
    "issue_certificate_chain",
    "longest_stall",
    "organisation_numbers",
    "with_added_latency",
]
