"""Counts as people write them (1_000_000, "1M", "1.5k", "250K", "2B") to whole numbers."""

from __future__ import annotations

import re
from decimal import Decimal

from followerwatch.models import MAX_COUNT

# ASCII digits only (\d would take "١٠٠٠"); an underscore only between two digits.
_COUNT = re.compile(r"^([0-9]+(?:_[0-9]+)*(?:\.[0-9]+)?)([kKMB]?)$")
_SCALE = {"": 1, "k": 1_000, "K": 1_000, "M": 1_000_000, "B": 1_000_000_000}
# More digits than MAX_COUNT has cannot be a count; checked before any arithmetic on them.
_MAX_DIGITS = len(str(MAX_COUNT)) + 1
EXPECTED = "expected a count like 1000, 1_000_000, '1.5k', '250K', '1M' or '2B'"


def parse_count(value: object) -> int:
    """A whole number in 0 … MAX_COUNT from an int or a string like "1.5k"; else ValueError."""
    if type(value) is int:
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)  # TOML's 1e6
    elif isinstance(value, str):
        number = _parse_text(value.strip())
    else:
        raise ValueError(EXPECTED)
    if number < 0:
        raise ValueError("a count cannot be negative")
    if number > MAX_COUNT:
        raise ValueError(f"a count cannot be larger than {MAX_COUNT:,}")
    return number


def _parse_text(text: str) -> int:
    shown = repr(text) if len(text) <= 30 else repr(text[:27] + "...")
    if text.startswith("-") and _COUNT.match(text[1:]):
        raise ValueError("a count cannot be negative")
    if text.endswith("m") and _COUNT.match(text[:-1]):
        raise ValueError(f"{shown}: m means minutes; write M for a million (e.g. '1M')")
    match = _COUNT.match(text)
    if match is None:
        raise ValueError(f"{shown}: {EXPECTED}")
    digits, suffix = match.group(1).replace("_", ""), match.group(2)
    if len(digits.split(".")[0].lstrip("0")) > _MAX_DIGITS:
        raise ValueError(f"a count cannot be larger than {MAX_COUNT:,}")
    exact = Decimal(digits) * _SCALE[suffix]
    if exact != exact.to_integral_value():
        raise ValueError(f"{shown} is not a whole number")
    return int(exact)
