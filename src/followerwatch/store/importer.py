"""`followerwatch import FILE.csv`: history (`timestamp,platform,account,followers`) into InfluxDB.

Each row becomes the same `followers` point a poll would have written (with the watched
account's labels), so importing a file twice overwrites the same points and changes nothing.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from followerwatch.models import MAX_COUNT, Point
from followerwatch.sources import REGISTRY
from followerwatch.store.base import Store
from followerwatch.store.influx_v1 import chunk_lines
from followerwatch.store.lineprotocol import encode
from followerwatch.store.schema import FOLLOWERS

COLUMNS = ("timestamp", "platform", "account", "followers")
# Labels by (platform, account name), taken from the watchlist.
Labels = Mapping[tuple[str, str], tuple[tuple[str, str], ...]]


@dataclass(frozen=True)
class BadRow:
    """A row that was not imported, with its line number in the file."""

    line: int
    reason: str


@dataclass
class Parsed:
    """What a CSV holds: encoded lines ready to write, and the rows that were refused."""

    lines: list[str] = field(default_factory=list)
    bad: list[BadRow] = field(default_factory=list)
    accounts: set[tuple[str, str]] = field(default_factory=set)


class ImportFileError(Exception):
    """The file cannot be read at all (missing, unreadable, wrong header)."""


def parse_time(text: str) -> datetime:
    """ISO 8601; a time without an offset is UTC, a bare date is midnight UTC."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def parse_csv(path: Path, labels: Labels, precision: str) -> Parsed:
    """Validate every row; good rows become line protocol at the store's precision."""
    parsed = Parsed()
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            missing = set(COLUMNS) - set(reader.fieldnames or [])
            if missing:
                raise ImportFileError(f"{path}: header lacks {', '.join(sorted(missing))}")
            for row in reader:
                # line_num is the physical line the row ended on (quoted newlines included).
                line = reader.line_num
                try:
                    point = _point(row, labels)
                    parsed.lines.append(encode(point, precision))
                except ValueError as exc:
                    parsed.bad.append(BadRow(line, str(exc)))
                    continue
                parsed.accounts.add((point.tags[0][1], point.tags[1][1]))
    except OSError as exc:
        raise ImportFileError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ImportFileError(f"{path}: not UTF-8 text") from None
    return parsed


def _point(row: Mapping[str, str | None], labels: Labels) -> Point:
    values = {key: (row.get(key) or "").strip() for key in COLUMNS}
    if None in row:
        raise ValueError("more columns than the header")
    empty = [key for key in COLUMNS if not values[key]]
    if empty:
        raise ValueError(f"{empty[0]} is empty")
    try:
        when = parse_time(values["timestamp"])
    except ValueError:
        raise ValueError(f"timestamp {values['timestamp']!r} is not ISO 8601") from None
    platform, account = values["platform"], values["account"]
    if platform not in REGISTRY:
        raise ValueError(f"unknown platform {platform!r}")
    try:
        followers = int(values["followers"])
    except ValueError:
        raise ValueError(f"followers {values['followers']!r} is not a whole number") from None
    if followers < 0:
        raise ValueError("followers cannot be negative")
    if followers > MAX_COUNT:
        # Past 2^53 a count is no longer exact in Grafana; past 2^63 InfluxDB refuses the batch.
        raise ValueError(f"followers is larger than {MAX_COUNT:,}, the largest count stored")
    tags = (("platform", platform), ("account", account), *labels.get((platform, account), ()))
    return Point(FOLLOWERS, tags, (("followers", followers),), when)


async def write(
    store: Store,
    lines: Sequence[str],
    advance: Callable[[int], None],
    max_lines: int = 5000,
) -> None:
    """Write in chunks straight to InfluxDB, calling `advance(n)` after each chunk lands."""
    for body in chunk_lines(lines, max_lines):
        chunk = body.split("\n")
        await store.write_lines(chunk)
        advance(len(chunk))
