"""Valid organisation numbers for tests with many customers."""

from __future__ import annotations

from ..orgnr import is_valid_orgno

__all__ = ["organisation_numbers"]


def organisation_numbers(count: int, start: int = 31_000_000) -> list[str]:
    """Return ``count`` valid, distinct organisation numbers (nine digits, mod-11 check digit), in order.

    ``start`` is the first eight digits to try; give different starts for sets that must not overlap.
    """
    found: list[str] = []
    base = start
    while len(found) < count:
        found.extend(number for number in (f"{base}{digit}" for digit in range(10)) if is_valid_orgno(number))
        base += 1
    return found[:count]
