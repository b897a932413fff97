"""The durable spool: encoded points wait here (SQLite, WAL) until InfluxDB answers 2xx."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from followerwatch.disk.sqlite import GroupCommitter, insert_many, open_db

_SCHEMA = """
CREATE TABLE IF NOT EXISTS spool (seq INTEGER PRIMARY KEY AUTOINCREMENT, line TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO counters VALUES ('added', 0), ('written', 0), ('dropped', 0),
    ('dead_lettered', 0), ('dropped_disk_full', 0);
"""


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
    """A FIFO of line-protocol lines that survives crashes; capped, dropping the oldest."""

    def __init__(
        self, path: Path, cap: int = 5_000_000, *, reset_at: datetime | None = None
    ) -> None:
        """Open (creating) the file; a damaged one raises StateFileError unless `reset_at`."""
        self.path = path
        self.dead_letter_path = path.with_name("dead-letter.jsonl")
        self.cap = cap
        # The loop's connection: peek, ack, dead-letter, counts, and the synchronous add.
        self._db = open_db(path, _SCHEMA, check=True, reset_at=reset_at)
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
            return self._append(self._db, lines)

    async def add_async(self, lines: Sequence[str]) -> int:
        """`add`, committed in the committer thread together with every other add queued."""
        if not lines:
            return 0
        return await self._committer.submit(lines)

    def _append_group(self, db: sqlite3.Connection, group: list[Sequence[str]]) -> list[int]:
        dropped = self._append(db, [line for lines in group for line in lines])
        # The group's drops are reported once, by its first add (the ledger counts them all).
        return [dropped, *[0] * (len(group) - 1)]

    def _append(self, db: sqlite3.Connection, lines: Sequence[str]) -> int:
        """Insert lines and drop the oldest over the cap (in a transaction); the dropped count."""
        insert_many(db, "INSERT INTO spool (line)", [(ln,) for ln in lines])
        self._bump(db, "added", len(lines))
        overflow = self._size_over(db, self.cap) - self.cap
        if overflow > 0:
            db.execute(
                "DELETE FROM spool WHERE seq IN (SELECT seq FROM spool ORDER BY seq LIMIT ?)",
                (overflow,),
            )
            self._bump(db, "dropped", overflow)
        return max(0, overflow)

    def add_dropped(self, points: int) -> None:
        """Record points dropped before the spool (disk full, memory buffer full) in the ledger."""
        if points:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._bump(self._db, "added", points)
                self._bump(self._db, "dropped_disk_full", points)

    def peek(self, max_lines: int, max_bytes: int = 2_000_000) -> list[tuple[int, str]]:
        """The oldest lines, at most `max_lines` and about `max_bytes`."""
        out: list[tuple[int, str]] = []
        size = 0
        for seq, line in self._db.execute(
            "SELECT seq, line FROM spool ORDER BY seq LIMIT ?", (max_lines,)
        ):
            if out and size + len(line) > max_bytes:
                break
            out.append((seq, line))
            size += len(line) + 1
        return out

    def ack(self, seqs: Sequence[int]) -> None:
        """These lines are in InfluxDB: remove them."""
        # Without an fsync of its own: a power cut that loses this commit only makes the lines
        # (and their count as written) come back, and InfluxDB stores a re-sent point once.
        # The next fully synced commit (the next add) makes it durable; a process crash never
        # loses it (WAL).
        self._db.execute("PRAGMA synchronous=NORMAL")
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                removed = self._delete(seqs)
                self._bump(self._db, "written", removed)
        finally:
            self._db.execute("PRAGMA synchronous=FULL")

    def dead_letter(self, rejected: Sequence[tuple[int, str]], reason: str) -> None:
        """InfluxDB will never take these lines: move them to the dead-letter file, with why."""
        when = datetime.now(UTC).isoformat()
        with self.dead_letter_path.open("a", encoding="utf-8") as fh:
            for _, line in rejected:
                fh.write(json.dumps({"time": when, "reason": reason, "line": line}) + "\n")
            fh.flush()
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._bump(self._db, "dead_lettered", self._delete([seq for seq, _ in rejected]))

    def _size_over(self, db: sqlite3.Connection, cap: int) -> int:
        """The size when it may exceed `cap`, else a bound at most `cap`: cheap on a big spool."""
        # seqs are unique, so the span of the rowid b-tree's ends bounds the row count from
        # above in O(log n); count(*) reads every page and is only needed near the cap.
        # Two queries: SQLite reads min() or max() alone off the b-tree, but both at once by a scan.
        low = db.execute("SELECT min(seq) FROM spool").fetchone()[0]
        high = db.execute("SELECT max(seq) FROM spool").fetchone()[0]
        if low is None or high - low + 1 <= cap:
            return 0 if low is None else int(high - low + 1)
        return int(db.execute("SELECT count(*) FROM spool").fetchone()[0])

    def size(self) -> int:
        """Lines waiting."""
        return int(self._db.execute("SELECT count(*) FROM spool").fetchone()[0])

    def newest_with_prefix(self, lines: int, prefix: str) -> int:
        """How many of the newest `lines` lines start with `prefix` (a measurement and ",")."""
        row = self._db.execute(
            "SELECT count(*) FROM (SELECT line FROM spool ORDER BY seq DESC LIMIT ?)"
            " WHERE substr(line, 1, ?) = ?",
            (lines, len(prefix), prefix),
        ).fetchone()
        return int(row[0])

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

    def _delete(self, seqs: Sequence[int]) -> int:
        cur = self._db.executemany("DELETE FROM spool WHERE seq=?", [(s,) for s in seqs])
        return max(0, cur.rowcount)

    @staticmethod
    def _bump(db: sqlite3.Connection, name: str, by: int) -> None:
        db.execute("UPDATE counters SET value = value + ? WHERE name=?", (by, name))
