"""Units as people write them: durations ("90s", "1h30m", "2w") and counts ("1M", "1.5k", "2B")."""

from __future__ import annotations

import math
import re
from decimal import Decimal

from followerwatch.models import MAX_COUNT

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
# Every error names the units, so a user never has to guess which ones exist.
_EXPECTED = "expected a duration like 60, '90s', '5m', '1h30m', '2d' or '2w' (units: s m h d w)"


def parse_duration(value: object) -> float:
    """Seconds from a number or a string like "90s", "5m", "1h30m", "2w"; else ValueError."""
    if isinstance(value, bool):
        raise ValueError(_EXPECTED)
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().replace(" ", "")
        if not text:
            raise ValueError(_EXPECTED)
        pos, seconds = 0, 0.0
        for match in _PART.finditer(text):
            if match.start() != pos:
                break
            seconds += float(match.group(1)) * _UNIT[match.group(2)]
            pos = match.end()
        if pos != len(text):
            try:
                seconds = float(text)
            except ValueError:
                raise ValueError(_EXPECTED) from None
    else:
        raise ValueError(_EXPECTED)
    if not math.isfinite(seconds):
        raise ValueError("a duration must be a finite number of seconds")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


def format_duration(seconds: float) -> str:
    """A short human form: 45s, 5m, 1h 30m, 2d 4h."""
    s = round(seconds)
    if s < 60:
        return f"{seconds:g}s" if seconds < 1 else f"{s}s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if s >= size:
            parts.append(f"{s // size}{unit}")
            s %= size
    return " ".join(parts[:2])


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
