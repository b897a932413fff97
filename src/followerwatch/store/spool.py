"""The durable spool: encoded points wait here (SQLite, WAL) until InfluxDB answers 2xx."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import structlog

from followerwatch.disk.sqlite import GroupCommitter, insert_many, open_db
from followerwatch.store.spoolbatch import Batch, ranges

log = structlog.get_logger("followerwatch.spool")

# A row holds the lines of one add (at most CHUNK_LINES), joined by "\n": line number `seq + i`
# is its i-th. Line numbers come from `next_line` and are never reused, so a line keeps its
# number while its chunk is trimmed (acked, dropped, dead-lettered) around it.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS chunks (
    seq INTEGER PRIMARY KEY, n INTEGER NOT NULL, lines TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO counters VALUES ('added', 0), ('written', 0), ('dropped', 0),
    ('dead_lettered', 0), ('dropped_disk_full', 0), ('next_line', 1);
"""
CHUNK_LINES = 1_000  # an add of more lines takes several rows (so a trim rewrites few)


@dataclass(frozen=True, slots=True)
class SpoolCounts:
    """The spool's ledger: `added == written + dropped + dropped_disk_full + dead_lettered +
    spooled` always holds.

    `dropped` counts the oldest points dropped at the spool's cap; `dropped_disk_full` the
    points that never reached it because the disk was full and the memory buffer too (they count
    as added when dropped, so the sum stays balanced).
    """

    added: int
    written: int
    dropped: int
    dead_lettered: int
    spooled: int
    dropped_disk_full: int = 0

    @property
    def balanced(self) -> bool:
        """Whether the invariant holds."""
        lost = self.dropped + self.dropped_disk_full + self.dead_lettered
        return self.added == self.written + lost + self.spooled


class Spool:
    """A FIFO of line-protocol lines that survives crashes; capped, dropping the oldest.

    Each line has a number (`seq`, rising, never reused): `take` hands out a batch of lines
    with their numbers (`peek` as (number, line) pairs), `ack` and `dead_letter` take them back.
    Lines are stored in chunks, a row per add, so a commit, a take and an ack cost per chunk,
    not per line.
    """

    def __init__(
        self, path: Path, cap: int = 5_000_000, *, reset_at: datetime | None = None
    ) -> None:
        """Open (creating) the file; a damaged one raises StateFileError unless `reset_at`."""
        self.path = path
        self.dead_letter_path = path.with_name("dead-letter.jsonl")
        self.cap = cap
        # The loop's connection: peek, ack, dead-letter, counts, and the synchronous add.
        self._db = open_db(path, _SCHEMA, check=True, reset_at=reset_at)
        if migrated := migrate_line_rows(self._db):
            log.info("spool file moved to one row per add", file=str(path), lines=migrated)
        # The committer thread's own connection, so its fsyncs never hold the event loop.
        self._committer: GroupCommitter[Sequence[str], int] = GroupCommitter(
            open_db(path, _SCHEMA), self._append_group, "spool-committer"
        )

    @property
    def commits(self) -> int:
        """Transactions that added lines through `add_async` (one per group of adds)."""
        return self._committer.commits

    def close(self) -> None:
        """Commit what is queued, stop the committer thread and close the databases."""
        self._committer.close()
        self._db.close()

    def add(self, lines: Sequence[str]) -> int:
        """Append lines durably; returns how many of the oldest were dropped to fit the cap."""
        if not lines:
            return 0
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            return self._append(self._db, [lines])

    async def add_async(self, lines: Sequence[str]) -> int:
        """`add`, committed in the committer thread together with every other add queued."""
        if not lines:
            return 0
        return await self._committer.submit(lines)

    def _append_group(self, db: sqlite3.Connection, group: list[Sequence[str]]) -> list[int]:
        dropped = self._append(db, group)
        # The group's drops are reported once, by its first add (the ledger counts them all).
        return [dropped, *[0] * (len(group) - 1)]

    def _append(self, db: sqlite3.Connection, adds: Sequence[Sequence[str]]) -> int:
        """Insert adds, a chunk each, and drop the oldest over the cap (in a transaction);
        the dropped count."""
        total = sum(len(lines) for lines in adds)
        # One statement takes the adds' numbers and counts them as added.
        bumped = dict(
            db.execute(
                "UPDATE counters SET value = value + ? WHERE name IN ('added', 'next_line')"
                " RETURNING name, value",
                (total,),
            ).fetchall()
        )
        seq = bumped["next_line"] - total
        rows: list[tuple[int, int, str]] = []
        for lines in adds:
            rows += chunk_rows(seq, lines)
            seq += len(lines)
        insert_many(db, "INSERT INTO chunks (seq, n, lines)", rows)
        # Numbers are unique, so the span from the oldest to the next bounds the size from
        # above in O(log n); the exact sum reads every row and is only needed near the cap.
        oldest = db.execute("SELECT min(seq) FROM chunks").fetchone()[0]
        if oldest is None or seq - oldest <= self.cap:
            return 0
        overflow = _size(db) - self.cap
        if overflow <= 0:
            return 0
        _drop_oldest(db, overflow)
        _bump(db, "dropped", overflow)
        return overflow

    def add_dropped(self, points: int) -> None:
        """Record points dropped before the spool (disk full, memory buffer full) in the ledger."""
        if points:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                _bump(self._db, "added", points)
                _bump(self._db, "dropped_disk_full", points)

    def take(self, max_lines: int, max_bytes: int = 2_000_000) -> Batch:
        """The oldest lines, at most `max_lines` and about `max_bytes`, as a batch."""
        runs: list[tuple[int, int]] = []
        lines: list[str] = []
        size = 0
        cur = self._db.execute("SELECT seq, n, lines FROM chunks ORDER BY seq")
        try:
            # A row at a time: the rows past the batch are never read off the disk.
            for seq, n, text in cur:
                if len(lines) + n <= max_lines and size + len(text) <= max_bytes:
                    # The whole chunk fits (its last line is within max_bytes).
                    runs.append((seq, n))
                    lines += text.split("\n")
                    size += len(text) + 1
                    if len(lines) < max_lines:
                        continue
                    break
                part: list[str] = []
                for line in text.split("\n"):
                    full = len(lines) + len(part) >= max_lines
                    if full or ((lines or part) and size + len(line) > max_bytes):
                        break
                    part.append(line)
                    size += len(line) + 1
                if part:
                    runs.append((seq, len(part)))
                    lines += part
                break
        finally:
            cur.close()  # an open statement would keep this connection's read snapshot
        return Batch(tuple(runs), lines, size)

    def peek(self, max_lines: int, max_bytes: int = 2_000_000) -> list[tuple[int, str]]:
        """The oldest lines and their numbers, at most `max_lines` and about `max_bytes`."""
        return self.take(max_lines, max_bytes).pairs()

    def ack(self, done: Batch | Sequence[int]) -> None:
        """These lines (a batch, or line numbers) are in InfluxDB: remove them."""
        # Without an fsync of its own: a power cut that loses this commit only makes the lines
        # (and their count as written) come back, and InfluxDB stores a re-sent point once.
        # The next fully synced commit (the next add) makes it durable; a process crash never
        # loses it (WAL).
        self._db.execute("PRAGMA synchronous=NORMAL")
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                _bump(self._db, "written", self._remove(done))
        finally:
            self._db.execute("PRAGMA synchronous=FULL")

    def dead_letter(self, rejected: Batch | Sequence[tuple[int, str]], reason: str) -> None:
        """InfluxDB will never take these lines: move them to the dead-letter file, with why."""
        if not isinstance(rejected, Batch):
            rejected = Batch(tuple((seq, 1) for seq, _ in rejected), [ln for _, ln in rejected])
        when = datetime.now(UTC).isoformat()
        with self.dead_letter_path.open("a", encoding="utf-8") as fh:
            for line in rejected.lines:
                fh.write(json.dumps({"time": when, "reason": reason, "line": line}) + "\n")
            fh.flush()
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            _bump(self._db, "dead_lettered", self._remove(rejected))

    def _remove(self, lines: Batch | Sequence[int]) -> int:
        """Remove these lines (those still spooled); how many were."""
        spans = lines.ranges() if isinstance(lines, Batch) else ranges(lines)
        return sum(remove_range(self._db, a, b) for a, b in spans)

    def size(self) -> int:
        """Lines waiting."""
        return _size(self._db)

    def newest_with_prefix(self, lines: int, prefix: str) -> int:
        """How many of the newest `lines` lines start with `prefix` (a measurement and ",")."""
        found = 0
        cur = self._db.execute("SELECT n, lines FROM chunks ORDER BY seq DESC")
        try:
            for n, text in cur:
                if lines <= 0:
                    break
                newest = text.split("\n")[-min(n, lines) :]
                found += sum(1 for line in newest if line.startswith(prefix))
                lines -= len(newest)
        finally:
            cur.close()
        return found

    def counts(self) -> SpoolCounts:
        """The ledger."""
        values = dict(self._db.execute("SELECT name, value FROM counters").fetchall())
        return SpoolCounts(
            values["added"],
            values["written"],
            values["dropped"],
            values["dead_lettered"],
            self.size(),
            values["dropped_disk_full"],
        )


def remove_range(db: sqlite3.Connection, a: int, b: int) -> int:
    """Remove the spooled lines numbered a ≤ seq < b (in a transaction); how many there were."""
    removed = 0
    # A chunk that starts before the range and reaches into it keeps its lines outside it.
    row = db.execute(
        "SELECT seq, n, lines FROM chunks WHERE seq < ? ORDER BY seq DESC LIMIT 1", (a,)
    ).fetchone()
    if row is not None and row[0] + row[1] > a:
        seq, n, text = row
        lines = text.split("\n")
        before, after = lines[: a - seq], lines[b - seq :] if seq + n > b else []
        removed += int(n) - len(before) - len(after)
        db.execute(
            "UPDATE chunks SET n = ?, lines = ? WHERE seq = ?",
            (len(before), "\n".join(before), seq),
        )
        if after:
            db.execute(
                "INSERT INTO chunks (seq, n, lines) VALUES (?, ?, ?)",
                (b, len(after), "\n".join(after)),
            )
            return removed
    # Whole chunks inside the range: by the rowid range, no line split.
    cur = db.execute(
        "DELETE FROM chunks WHERE seq >= ? AND seq < ? AND seq + n <= ? RETURNING n", (a, b, b)
    )
    removed += sum(int(n) for (n,) in cur.fetchall())
    # A chunk that starts inside the range and reaches past it keeps its tail.
    row = db.execute(
        "SELECT seq, n, lines FROM chunks WHERE seq >= ? AND seq < ? LIMIT 1", (a, b)
    ).fetchone()
    if row is not None:
        removed += _trim_head(db, row, b - row[0])
    return removed


def _drop_oldest(db: sqlite3.Connection, lines: int) -> None:
    """Remove the `lines` oldest lines (in a transaction): whole chunks, then a chunk's head."""
    left, upto = lines, None
    cur = db.execute("SELECT seq, n FROM chunks ORDER BY seq")
    try:
        for seq, n in cur:
            if n > left:
                break
            left, upto = left - n, seq + 1
            if not left:
                break
    finally:
        cur.close()
    if upto is not None:
        db.execute("DELETE FROM chunks WHERE seq < ?", (upto,))
    if left:
        _trim_head(
            db, db.execute("SELECT seq, n, lines FROM chunks ORDER BY seq LIMIT 1").fetchone(), left
        )


def _trim_head(db: sqlite3.Connection, row: tuple[int, int, str], lines: int) -> int:
    """Remove a chunk's first `lines` lines (fewer than it has), renumbering none; that many."""
    seq, n, text = row
    rest = text.split("\n")[lines:]
    db.execute(
        "UPDATE chunks SET seq = ?, n = ?, lines = ? WHERE seq = ?",
        (seq + lines, n - lines, "\n".join(rest), seq),
    )
    return lines


def chunk_rows(seq: int, lines: Sequence[str]) -> list[tuple[int, int, str]]:
    """Rows (seq, n, lines) for lines numbered from `seq`, at most CHUNK_LINES a row."""
    rows: list[tuple[int, int, str]] = []
    for i in range(0, len(lines), CHUNK_LINES):
        part = lines[i : i + CHUNK_LINES]
        text = "\n".join(part)
        if text.count("\n") != len(part) - 1:
            # A line of two would shift the number of every line after it in its chunk.
            raise ValueError("a spooled line contains a newline")
        rows.append((seq + i, len(part), text))
    return rows


def migrate_line_rows(db: sqlite3.Connection) -> int:
    """A spool file of the old format (table `spool`, a row per line): its lines, in order,
    into chunks, in one transaction (a crash half-way leaves the old table as it was); how
    many lines it held."""
    with db:
        db.execute("BEGIN IMMEDIATE")
        old = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'spool'"
        if db.execute(old).fetchone() is None:
            return 0
        seq = first = _counter(db, "next_line")
        cur = db.execute("SELECT line FROM spool ORDER BY seq")
        try:
            while part := [line for (line,) in cur.fetchmany(CHUNK_LINES)]:
                insert_many(db, "INSERT INTO chunks (seq, n, lines)", chunk_rows(seq, part))
                seq += len(part)
        finally:
            cur.close()
        _bump(db, "next_line", seq - first)
        db.execute("DROP TABLE spool")
    return seq - first


def _size(db: sqlite3.Connection) -> int:
    return int(db.execute("SELECT coalesce(sum(n), 0) FROM chunks").fetchone()[0])


def _counter(db: sqlite3.Connection, name: str) -> int:
    return int(db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()[0])


def _bump(db: sqlite3.Connection, name: str, by: int) -> None:
    db.execute("UPDATE counters SET value = value + ? WHERE name = ?", (by, name))
