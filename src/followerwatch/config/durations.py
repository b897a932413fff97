"""Human durations ("90s", "5m", "1h30m", "2w", 300) to seconds, and back."""

from __future__ import annotations

import math
import re

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
