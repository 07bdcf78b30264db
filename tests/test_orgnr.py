"""Organisation numbers: the mod-11 check digit."""

from __future__ import annotations

import pytest

from maskinporten_auth import ConfigurationError
from maskinporten_auth.orgnr import is_valid_orgno, validate_orgno


@pytest.mark.parametrize("orgno", ["123456785", "310539759", "313042995", "313990265", "974760673"])
def test_valid_numbers(orgno):
    assert is_valid_orgno(orgno)
    assert validate_orgno(orgno, "consumer_org") == orgno


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("123456789", "mod-11"),
        ("12345678", "nine digits"),
        ("1234567850", "nine digits"),
        ("12345678a", "nine digits"),
        ("0192:310539759", "without the '0192:' prefix"),
        (" 310539759", "nine digits"),
        ("３１０５３９７５９", "nine digits"),
        (310539759, "must be a string"),
    ],
)
def test_invalid_numbers_name_the_field_and_the_problem(value, message):
    with pytest.raises(ConfigurationError, match=message) as raised:
        validate_orgno(value, "consumer_org")
    assert raised.value.field == "consumer_org"


def test_remainder_one_is_never_valid():
    # weights 3,2,7,6,5,4,3,2 over 10000000 give 3; over 00000010 give 3... find a remainder-1 prefix directly
    prefix = next(
        f"{n:08d}"
        for n in range(10**7, 10**8)
        if sum(int(d) * w for d, w in zip(f"{n:08d}", (3, 2, 7, 6, 5, 4, 3, 2), strict=True)) % 11 == 1
    )
    assert not any(is_valid_orgno(prefix + str(check)) for check in range(10))
