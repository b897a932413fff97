"""Rows <-> values for the state database, and the few query helpers every table's class shares."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime

from followerwatch.models import Event, EventKind, EventStatus, Projection, Severity

EVENT_COLS = (
    "id, time, platform, account, rule, kind, value, threshold, message, severity, status, labels,"
    " score"
)
# How many columns EVENT_COLS names: what a query selects after them follows at this index.
N_EVENT_COLS = EVENT_COLS.count(",") + 1
# The same columns of the events table aliased `e`, for joins.
E_COLS = ", ".join("e." + c.strip() for c in EVENT_COLS.split(","))
# Events about the service itself (operational, campaign) carry this platform.
SERVICE_PLATFORM = "followerwatch"

# Bound parameters per IN (...) query: well under SQLite's limit (999 before 3.32).
_PART = 500


def ts(value: datetime) -> str:
    """A time as stored: ISO 8601 in UTC."""
    return value.astimezone(UTC).isoformat()


def event_row(ev: Event) -> tuple[object, ...]:
    """The EVENT_COLS of an event, as stored."""
    return (
        ev.id,
        ts(ev.time),
        ev.platform,
        ev.account,
        ev.rule,
        str(ev.kind),
        ev.value,
        ev.threshold,
        ev.message,
        str(ev.severity),
        str(ev.status),
        json.dumps(ev.labels),
        ev.score,
    )


def event_from_row(row: Sequence[object], projection: object = None) -> Event:
    """An Event from the EVENT_COLS of a row (with its stored projection, if given)."""
    labels = json.loads(str(row[11]))
    proj, suffix = _projection(projection)
    return Event(
        id=str(row[0]),
        time=datetime.fromisoformat(str(row[1])),
        platform=str(row[2]),
        account=str(row[3]),
        rule=str(row[4]),
        kind=EventKind(str(row[5])),
        value=int(str(row[6])),
        threshold=int(str(row[7])),
        message=str(row[8]) + suffix,
        severity=Severity(str(row[9])),
        status=EventStatus(str(row[10])),
        labels=tuple((str(k), str(v)) for k, v in labels),
        projection=proj,
        score=None if row[12] is None else float(str(row[12])),
    )


def projection_json(projection: Projection) -> str:
    """How a projection is stored with its event (the text is fixed once, for every retry)."""
    return json.dumps(
        {
            "direction": projection.direction,
            "line": projection.line,
            "seconds": projection.seconds,
            "at": projection.at.isoformat(),
            "per_day": projection.per_day,
            "agreement": projection.agreement,
            "text": projection.message("it"),
        }
    )


def _projection(text: object) -> tuple[Projection | None, str]:
    if not text:
        return None, ""
    data = json.loads(str(text))
    projection = Projection(
        direction=str(data["direction"]),
        line=int(data["line"]),
        seconds=float(data["seconds"]),
        at=datetime.fromisoformat(str(data["at"])),
        per_day=float(data["per_day"]),
        agreement=float(data["agreement"]),
    )
    return projection, "; " + str(data["text"])


@contextmanager
def immediate(db: sqlite3.Connection) -> Iterator[None]:
    """A write transaction on the loop's connection: committed, or rolled back on any error."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def parts(names: Sequence[str]) -> list[Sequence[str]]:
    """Names cut into pieces small enough for one IN (...) query each."""
    return [names[i : i + _PART] for i in range(0, len(names), _PART)]


def by_platform(keys: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """(platform, account) keys grouped by platform, each account once, in order."""
    out: dict[str, list[str]] = {}
    for platform, account in dict.fromkeys(keys):
        out.setdefault(platform, []).append(account)
    return out


def placeholders(count: int) -> str:
    """`?,?,…` for an IN (...) of `count` values."""
    return ",".join("?" * count)


def columns(db: sqlite3.Connection, table: str) -> set[str]:
    """The column names of a table (none if it does not exist)."""
    return {row[1] for row in db.execute(f"PRAGMA table_info({table})")}


def summary_value(text: str) -> bytes | str:
    """A summary as stored in its account's row: its latin-1 bytes (a packed summary is such
    a string), which SQLite copies as a BLOB instead of converting to and from UTF-8."""
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text  # not a packed summary (set by hand): as TEXT, which SQLite also holds


def summary_text(value: bytes | str) -> str:
    """`summary_value` read back."""
    return value.decode("latin-1") if isinstance(value, bytes) else value
