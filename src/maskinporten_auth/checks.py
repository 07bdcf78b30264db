"""Checks of configuration values that more than one setting needs: numbers of seconds, counts."""

from __future__ import annotations

import math

from .errors import ConfigurationError

__all__ = ["is_finite_number", "validate_count", "validate_seconds"]


def is_finite_number(value: object) -> bool:
    """Whether ``value`` is an int or float (not a bool) that converts to a finite float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond the float range
        return False


def validate_seconds(value: object, field: str, *, minimum: float = 0.0) -> float:
    """Return ``value`` as seconds if it is a finite number of at least ``minimum``, else raise ConfigurationError."""
    if not is_finite_number(value) or value < minimum:  # type: ignore[operator]
        raise ConfigurationError(field, f"must be a finite number of seconds of at least {minimum:g}, got {value!r}")
    return float(value)  # type: ignore[arg-type]


def validate_count(value: object, field: str) -> int:
    """Return ``value`` if it is a whole number of at least 1, else raise ConfigurationError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(field, f"must be a whole number of at least 1, got {value!r}")
    return value
