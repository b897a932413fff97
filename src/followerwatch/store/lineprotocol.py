"""InfluxDB line protocol encoding: validate every part, then escape it.

Rules, and why (the 1.x parser in influxdb/models/points.go is the strictest reader we target):

- No control characters anywhere (C0, DEL, C1) and no lone surrogates. Line protocol has no
  escape for a newline, and a newline in a tag value has injected points through official
  clients; a literal newline inside a quoted string field is accepted by 1.x but not by every
  parser, so it is rejected too. Tabs count as control characters except in string fields.
- Measurement: commas and spaces escaped; must not start with `#` (a comment line).
- Tag keys, tag values, field keys: commas, spaces and `=` escaped.
- Backslashes: there is no portable escape for a backslash in names. 1.x/2.x keep `\\\\` as two
  characters while 3 Core reads it as one, and 1.x takes whatever follows a backslash as
  escaped when it looks for the end of a name, so a trailing backslash swallows the separator.
  In measurements, tag keys, tag values and field keys a backslash must therefore be followed by
  an ordinary character: one at the end, or before `,` `=` space `"` or `\\`, is rejected.
- String field values: `"` and `\\` escaped; any other printable text is fine.
- Empty tag values are skipped (InfluxDB rejects them); empty keys are rejected.
- `time` is rejected as a tag or field key: InfluxDB cannot store it.
- ints get the `i` suffix and must fit int64; bools are `true`/`false`; floats use `repr`
  (round-trips exactly) and must be finite.
- Tags are sorted by key, the order InfluxDB stores them in, which saves it a sort per point.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from functools import lru_cache

from followerwatch.models import FieldValue, Point

PRECISIONS: dict[str, int] = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
"""Supported precisions and how many units make a second."""

# The range a 1.x/2.x server can store (models.MinNanoTime / MaxNanoTime).
_MIN_NS = -(2**63) + 2
_MAX_NS = 2**63 - 2
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
_MAX_KEY_BYTES = 65_535
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_CONTROL_BUT_TAB = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\ud800-\udfff]")
# A backslash that is last, or precedes a character the 1.x scanner or unescaper treats specially.
_BAD_BACKSLASH = re.compile(r'\\(?=[\\,= "]|\Z)')

_MEASUREMENT_ESCAPES = str.maketrans({",": r"\,", " ": r"\ "})
_KEY_ESCAPES = str.maketrans({",": r"\,", " ": r"\ ", "=": r"\="})
_STRING_FIELD_ESCAPES = str.maketrans({'"': r"\"", "\\": r"\\"})
_NEEDS_KEY_ESCAPE = re.compile(r"[, =]")
# Anything a tag value might need escaped or rejected for; text with none of it is written as is.
_PLAIN_UNSAFE = re.compile(r'[\x00-\x20\x7f-\x9f\ud800-\udfff\\,="]')


def _check_text(kind: str, value: str) -> None:
    if not value:
        raise ValueError(f"{kind} must not be empty")
    if _CONTROL.search(value):
        raise ValueError(f"{kind} {value!r} contains a control character or newline")
    if _BAD_BACKSLASH.search(value):
        raise ValueError(
            f'{kind} {value!r} has a backslash at its end or before one of , = space " \\'
        )


# The same few measurements, tag keys, accounts and field keys repeat in every batch, so
# caching validated+escaped forms makes encoding mostly string concatenation.
@lru_cache(maxsize=256)
def escape_measurement(name: str) -> str:
    """Validate and escape a measurement name."""
    _check_text("measurement", name)
    if name.startswith("#"):
        raise ValueError(f"measurement {name!r} must not start with '#' (a comment line)")
    return name.translate(_MEASUREMENT_ESCAPES)


@lru_cache(maxsize=8192)
def escape_key(kind: str, value: str) -> str:
    """Validate and escape a tag key, tag value or field key; `kind` names it in errors."""
    _check_text(kind, value)
    if kind != "tag value" and value == "time":
        raise ValueError(f"{kind} 'time' cannot be stored by InfluxDB")
    if _NEEDS_KEY_ESCAPE.search(value) is None:
        return value
    return value.translate(_KEY_ESCAPES)


def tag_value(value: str) -> str:
    """`escape_key("tag value", value)` without its cache: there are too many accounts to cache."""
    if value and _PLAIN_UNSAFE.search(value) is None:
        return value
    return escape_key("tag value", value)


def escape_string_field(value: str) -> str:
    """Validate a string field value and return it quoted and escaped."""
    if _CONTROL_BUT_TAB.search(value):
        raise ValueError(f"string field {value!r} contains a control character or newline")
    return '"' + value.translate(_STRING_FIELD_ESCAPES) + '"'


def format_field_value(value: FieldValue) -> str:
    """Render one field value in line-protocol syntax."""
    kind = type(value)
    # Exact type checks: bool is a subclass of int and must not become `1i`.
    if kind is int:
        if not INT64_MIN <= value <= INT64_MAX:  # type: ignore[operator]
            raise ValueError(f"integer field {value} does not fit in int64")
        return f"{value}i"
    if kind is bool:
        return "true" if value else "false"
    if kind is float:
        if not math.isfinite(value):  # type: ignore[arg-type]
            raise ValueError(f"float field {value!r} is not finite")
        return repr(value)
    if kind is str:
        return escape_string_field(value)  # type: ignore[arg-type]
    raise ValueError(f"unsupported field type {kind.__name__}")


def timestamp(when: datetime, precision: str = "s") -> int:
    """Integer timestamp of an aware datetime at `precision`, floored, with no float math."""
    per_second = PRECISIONS.get(precision)
    if per_second is None:
        raise ValueError(f"unsupported precision {precision!r}; use one of {list(PRECISIONS)}")
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(f"timestamp {when.isoformat()} is naive; give it a timezone")
    delta = when - _EPOCH
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    nanos = micros * 1_000
    if not _MIN_NS <= nanos <= _MAX_NS:
        raise ValueError(f"timestamp {when.isoformat()} is outside InfluxDB's range")
    if per_second == 1_000_000_000:
        return nanos
    return micros // (1_000_000 // per_second)


# Points of one poll share their timestamp: caching it leaves little but concatenation per point.
_timestamp_cached = lru_cache(maxsize=64)(timestamp)
line_timestamp = _timestamp_cached
"""`timestamp`, cached for the few distinct times of a poll."""


def int_field(value: object) -> str | None:
    """`123i` for an int that fits int64; None for anything the general path must handle."""
    if type(value) is int and INT64_MIN <= value <= INT64_MAX:
        return f"{value}i"
    return None


# Not cached as a whole: with 100,000 accounts a bounded cache of series keys would only churn;
# the parts that repeat (measurement, tag keys) are cached and plain tag values pass straight.
def series_key(measurement: str, tags: tuple[tuple[str, str], ...]) -> str:
    """The escaped `measurement,k=v,...` prefix: tags sorted by key, empty values skipped."""
    head = escape_measurement(measurement)
    previous = None
    for key, value in sorted(tags):
        if key == previous:
            raise ValueError(f"duplicate tag key {key!r}")
        previous = key
        escaped_key = escape_key("tag key", key)  # validated even when its value is empty
        if value:
            head += "," + escaped_key + "=" + tag_value(value)
    if len(head) > _MAX_KEY_BYTES // 4 and len(head.encode()) > _MAX_KEY_BYTES:
        raise ValueError(f"series key of {measurement!r} exceeds {_MAX_KEY_BYTES} bytes")
    return head


@lru_cache(maxsize=1024)
def _field_prefixes(keys: tuple[str, ...]) -> tuple[str, ...]:
    if len(set(keys)) != len(keys):
        raise ValueError(f"duplicate field key in {keys!r}")
    return tuple([escape_key("field key", key) + "=" for key in keys])


def encode(point: Point, precision: str = "s") -> str:
    """Encode one point as a line of line protocol (no trailing newline); ValueError if unsafe."""
    return encode_line(point.measurement, point.tags, point.fields, point.time, precision)


def encode_line(
    measurement: str,
    tags: tuple[tuple[str, str], ...],
    fields: tuple[tuple[str, FieldValue], ...],
    time: datetime,
    precision: str = "s",
) -> str:
    """`encode` of a point's parts, for hot paths that need no Point object."""
    if not fields:
        raise ValueError(f"point of {measurement!r} has no fields")
    prefixes = _field_prefixes(tuple([key for key, _ in fields]))
    rendered = ",".join(
        [
            # ints (counts) are nearly every field: format them inline.
            prefix + f"{value}i"
            if type(value) is int and INT64_MIN <= value <= INT64_MAX
            else prefix + format_field_value(value)
            for prefix, (_, value) in zip(prefixes, fields, strict=True)
        ]
    )
    head = series_key(measurement, tags)
    return f"{head} {rendered} {_timestamp_cached(time, precision)}"


def encode_many(points: Iterable[Point], precision: str = "s") -> str:
    """Encode points as newline-separated line protocol (no trailing newline)."""
    return "\n".join([encode(point, precision) for point in points])
