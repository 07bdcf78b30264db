"""Norwegian organisation numbers (organisasjonsnummer): nine digits, the last a mod-11 check digit."""

from __future__ import annotations

from .errors import ConfigurationError

__all__ = ["is_valid_orgno", "validate_orgno"]

_WEIGHTS = (3, 2, 7, 6, 5, 4, 3, 2)


def is_valid_orgno(value: str) -> bool:
    """Return whether ``value`` is a nine-digit organisation number with a correct check digit."""
    if len(value) != 9 or not value.isascii() or not value.isdigit():
        return False
    remainder = sum(int(digit) * weight for digit, weight in zip(value[:8], _WEIGHTS, strict=True)) % 11
    if remainder == 1:
        return False
    check = 0 if remainder == 0 else 11 - remainder
    return int(value[8]) == check


def validate_orgno(value: object, field: str) -> str:
    """Return ``value`` if it is a valid organisation number, else raise :class:`ConfigurationError` for ``field``.

    The ``0192:`` prefix used inside tokens is not accepted here: Maskinporten wants the bare nine digits.
    """
    if not isinstance(value, str):
        raise ConfigurationError(field, f"must be a string of nine digits, got {type(value).__name__}")
    if value.startswith("0192:"):
        raise ConfigurationError(field, f"give the bare nine digits without the '0192:' prefix: {value[5:]!r}")
    if len(value) != 9 or not value.isascii() or not value.isdigit():
        raise ConfigurationError(field, f"an organisation number is nine digits, got {value!r}")
    if not is_valid_orgno(value):
        raise ConfigurationError(field, f"{value!r} fails the organisation number's mod-11 check digit")
    return value
