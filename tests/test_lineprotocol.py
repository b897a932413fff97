"""Line protocol: escaping tables, rejections, timestamps, and round trips through influxd."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from followerwatch.demo.influxd import TempInfluxd
from followerwatch.models import FieldValue, Point
from followerwatch.store.influx_v1 import InfluxV1Store, quote_ident
from followerwatch.store.lineprotocol import encode, encode_many, escape_key, timestamp

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
T0_S = 1714564800


def point(
    measurement: str = "m",
    tags: dict[str, str] | None = None,
    fields: dict[str, FieldValue] | None = None,
    time: datetime = T0,
) -> Point:
    return Point(
        measurement=measurement,
        tags=tuple((tags or {}).items()),
        fields=tuple((fields if fields is not None else {"v": 1}).items()),
        time=time,
    )


# -- escaping tables ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("measurement", "expected"),
    [
        ("followers", "followers"),
        ("a b", r"a\ b"),
        ("a,b", r"a\,b"),
        ("a=b", "a=b"),  # `=` is only special in keys
        ('a"b', 'a"b'),
        (" lead", r"\ lead"),
        ("ünï©ødé", "ünï©ødé"),
        (r"back\slash", r"back\slash"),
    ],
)
def test_measurement_escaping(measurement: str, expected: str) -> None:
    assert encode(point(measurement)) == f"{expected} v=1i {T0_S}"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain", "plain"),
        ("a b", r"a\ b"),
        ("a,b", r"a\,b"),
        ("a=b", r"a\=b"),
        ('say "hi"', r'say\ "hi"'),
        ("#hash", "#hash"),
        (r"x\y", r"x\y"),
        ("'quote'", "'quote'"),
        ("trailing ", "trailing\\ "),
    ],
)
def test_tag_value_escaping(value: str, expected: str) -> None:
    assert encode(point(tags={"t": value})) == f"m,t={expected} v=1i {T0_S}"


def test_tag_and_field_keys_escape_comma_space_equals() -> None:
    line = encode(point(tags={"a b": "1", "c,d": "2", "e=f": "3"}, fields={"g h,i=j": 1}))
    assert line == rf"m,a\ b=1,c\,d=2,e\=f=3 g\ h\,i\=j=1i {T0_S}"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("hello", '"hello"'),
        ('say "hi"', r'"say \"hi\""'),
        ("back\\slash", r'"back\\slash"'),
        ("ends with \\", r'"ends with \\"'),
        ("comma, space = equals", '"comma, space = equals"'),
        ("tab\there", '"tab\there"'),
        ("", '""'),
    ],
)
def test_string_field_escaping(value: str, expected: str) -> None:
    assert encode(point(fields={"s": value})) == f"m s={expected} {T0_S}"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, "0i"),
        (-5, "-5i"),
        (2**63 - 1, "9223372036854775807i"),
        (True, "true"),
        (False, "false"),
        (1.5, "1.5"),
        (3.0, "3.0"),
        (1e20, "1e+20"),
        (0.1, "0.1"),
    ],
)
def test_field_value_formats(value: FieldValue, expected: str) -> None:
    assert encode(point(fields={"f": value})) == f"m f={expected} {T0_S}"


def test_tags_sorted_and_empty_values_skipped() -> None:
    line = encode(point(tags={"zeta": "z", "alpha": "a", "empty": "", "mid": "m"}))
    assert line == f"m,alpha=a,mid=m,zeta=z v=1i {T0_S}"


def test_encode_many_joins_lines_without_trailing_newline() -> None:
    body = encode_many([point(tags={"t": "1"}), point(tags={"t": "2"})], "s")
    assert body == f"m,t=1 v=1i {T0_S}\nm,t=2 v=1i {T0_S}"
    assert encode_many([], "s") == ""


# -- rejections ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        point("m\nx"),
        point("m\rx"),
        point("m\tx"),
        point("#comment"),
        point(""),
        point("ends\\"),
        point(tags={"t": "a\nb=1 v=1i 0\nm,t=x"}),  # the classic injection
        point(tags={"t": "a\rb"}),
        point(tags={"t": "a\x00b"}),
        point(tags={"t": "a\x85b"}),  # C1 control (NEL)
        point(tags={"t\n": "a"}),
        point(tags={"": "a"}),
        point(tags={"time": "a"}),
        point(tags={"t": "trailing\\"}),
        point(tags={"t": "a\\ b"}),
        point(tags={"t": "a\\,b"}),
        point(tags={"t": "a\\=b"}),
        point(tags={"t": 'a\\"b'}),
        point(tags={"t": "a\\\\b"}),
        point(tags={"t\\": "a"}),
        point(tags={"t": "\ud800"}),  # lone surrogate: not encodable as UTF-8
        point(fields={}),
        point(fields={"": 1}),
        point(fields={"time": 1}),
        point(fields={"f\n": 1}),
        point(fields={"f\\": 1}),
        point(fields={"s": "line1\nline2"}),
        point(fields={"s": "cr\r"}),
        point(fields={"s": "nul\x00"}),
        point(fields={"f": float("nan")}),
        point(fields={"f": float("inf")}),
        point(fields={"f": float("-inf")}),
        point(fields={"f": 2**63}),
        point(fields={"f": -(2**63) - 1}),
        point(fields={"f": None}),  # type: ignore[dict-item]
        point(time=datetime(2024, 1, 1)),  # naive
        point(time=datetime(2263, 1, 1, tzinfo=UTC)),  # beyond int64 nanoseconds
        point(time=datetime(1677, 1, 1, tzinfo=UTC)),
    ],
    ids=repr,
)
def test_unsafe_points_are_rejected(bad: Point) -> None:
    with pytest.raises(ValueError):
        encode(bad)


def test_duplicate_keys_are_rejected() -> None:
    dup_tags = Point("m", (("t", "a"), ("t", "b")), (("v", 1),), T0)
    dup_fields = Point("m", (), (("v", 1), ("v", 2)), T0)
    for bad in (dup_tags, dup_fields):
        with pytest.raises(ValueError, match="duplicate"):
            encode(bad)


def test_unknown_precision_is_rejected() -> None:
    with pytest.raises(ValueError, match="precision"):
        encode(point(), "u")


# -- timestamps ---------------------------------------------------------------------------------


def test_timestamp_precisions_use_integer_math() -> None:
    when = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)
    assert timestamp(when, "s") == T0_S
    assert timestamp(when, "ms") == T0_S * 1000 + 123
    assert timestamp(when, "us") == T0_S * 1_000_000 + 123456
    assert timestamp(when, "ns") == T0_S * 1_000_000_000 + 123_456_000


def test_timestamp_float_trap() -> None:
    # A float path gives 1714564800.999999 * 1e6 = ...998999.9999 -> off by one microsecond.
    when = datetime(2024, 5, 1, 12, 0, 0, 999999, tzinfo=UTC)
    assert timestamp(when, "us") == 1714564800999999
    assert timestamp(when, "s") == T0_S


def test_timestamp_other_timezones_and_before_epoch() -> None:
    plus2 = timezone(timedelta(hours=2))
    assert timestamp(datetime(2024, 5, 1, 14, 0, tzinfo=plus2)) == T0_S
    before = datetime(1969, 12, 31, 23, 59, 59, 500000, tzinfo=UTC)
    assert timestamp(before, "s") == -1  # floored, so a point never moves forward in time
    assert timestamp(before, "ms") == -500


@given(micros=st.integers(min_value=-(2**62) // 1000, max_value=(2**62) // 1000))
def test_timestamp_matches_exact_arithmetic(micros: int) -> None:
    when = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)
    assert timestamp(when, "us") == micros
    assert timestamp(when, "ns") == micros * 1000
    assert timestamp(when, "ms") == micros // 1000
    assert timestamp(when, "s") == micros // 1_000_000


# -- round trip through the real influxd ----------------------------------------------------------

# Mostly the characters that matter to line protocol and InfluxQL, plus arbitrary printable text.
SPECIAL = st.sampled_from([",", "=", " ", '"', "'", "\\", "#", "\t", "/", "."])
TEXT_CHAR = st.one_of(SPECIAL, st.characters(exclude_categories=("Cs", "Cc")))
STRING_CHAR = st.one_of(SPECIAL, st.characters(exclude_categories=("Cs", "Cc")), st.just("\t"))


def _is_valid(kind: str, value: str) -> bool:
    try:
        escape_key(kind, value)
    except ValueError:
        return False
    return True


def names(kind: str) -> st.SearchStrategy[str]:
    return st.text(TEXT_CHAR, min_size=1, max_size=12).filter(lambda s: _is_valid(kind, s))


@st.composite
def batches(draw: st.DrawFn) -> list[Point]:
    measurement = draw(names("tag key").filter(lambda s: not s.startswith("#")))
    tag_key = draw(names("tag key"))
    field_key = draw(names("field key"))
    assume(len({field_key, tag_key, "n"}) == 3)
    values = draw(st.lists(names("tag value"), min_size=1, max_size=4, unique=True))
    strings = draw(st.lists(st.text(STRING_CHAR, max_size=16), min_size=len(values), max_size=4))
    return [
        Point(measurement, ((tag_key, value),), ((field_key, text), ("n", i)), T0 + timedelta(i))
        for i, (value, text) in enumerate(zip(values, strings, strict=False))
    ]


async def _round_trip(url: str, points: list[Point]) -> None:
    database = f"prop_{uuid.uuid4().hex[:12]}"
    async with httpx.AsyncClient(timeout=10.0) as client:
        store = InfluxV1Store(client, url=url, database=database)
        await store.create_database()
        try:
            await store.write(points)
            measurements = await store.query("SHOW MEASUREMENTS")
            series = await store.query(f"SELECT * FROM {quote_ident(points[0].measurement)}")
        finally:
            await store.query(f"DROP DATABASE {quote_ident(database)}", epoch=None)

    # Exactly one measurement: nothing was injected next to it.
    assert [row[0] for s in measurements for row in s["values"]] == [points[0].measurement]
    assert len(series) == 1
    columns = series[0]["columns"]
    rows = [dict(zip(columns, row, strict=True)) for row in series[0]["values"]]
    assert len(rows) == len(points)
    ((tag_key, _),) = points[0].tags
    field_key = points[0].fields[0][0]
    expected = sorted(
        (int(p.time.timestamp()), p.tags[0][1], p.fields[0][1], p.fields[1][1]) for p in points
    )
    got = sorted((r["time"], r[tag_key], r[field_key], r["n"]) for r in rows)
    assert got == expected


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(points=batches())
def test_round_trip_through_influxd_is_exact(influxd: TempInfluxd, points: list[Point]) -> None:
    asyncio.run(_round_trip(influxd.url, points))


@given(
    prefix=st.text(TEXT_CHAR, max_size=8),
    suffix=st.text(TEXT_CHAR, max_size=8),
    newline=st.sampled_from(["\n", "\r", "\r\n"]),
    where=st.sampled_from(["measurement", "tag key", "tag value", "field key", "string"]),
)
def test_newlines_are_always_rejected(prefix: str, suffix: str, newline: str, where: str) -> None:
    bad = prefix + newline + suffix
    candidate = {
        "measurement": point(bad),
        "tag key": point(tags={bad: "v"}),
        "tag value": point(tags={"t": bad}),
        "field key": point(fields={bad: 1}),
        "string": point(fields={"s": bad}),
    }[where]
    with pytest.raises(ValueError):
        encode(candidate)


NASTY = [
    "a,b",
    "a=b",
    "a b",
    ' "quoted" ',
    r"back\slash",
    "it's",
    "#hash",
    "ünï©ødé ✓",
    r"a\#b",
    "=,= ,",
    "x\u2028y",  # a Unicode line separator is not a line-protocol newline
]


async def test_nasty_values_round_trip(
    influx_db: tuple[str, str], http_client: httpx.AsyncClient
) -> None:
    url, database = influx_db
    store = InfluxV1Store(http_client, url=url, database=database)
    points = [
        Point(
            'nasty measurement, ="x"',
            (("tag key, =", value), ("k", str(i))),
            (("field key, =", value), ("i", i)),
            T0,
        )
        for i, value in enumerate(NASTY)
    ]
    await store.write(points)
    series = await store.query(f"SELECT * FROM {quote_ident(points[0].measurement)}")
    assert len(series) == 1
    rows = [dict(zip(series[0]["columns"], row, strict=True)) for row in series[0]["values"]]
    got = sorted((row["i"], row["tag key, ="], row["field key, ="]) for row in rows)
    assert got == [(i, value, value) for i, value in enumerate(NASTY)]
