"""The spool on PostgreSQL, shared by replicas: SQLite's Spool API, a row per line.

Any replica's writer drains any replica's lines. `take` claims the lines it hands out
(`FOR UPDATE SKIP LOCKED`, then `claimed_by` until `claim_until`), so two writers never send
the same line at once; a writer that dies leaves its claim to expire after `claim_ttl`, and
another sends those lines (InfluxDB stores a re-sent point once). A writer takes back its own
claimed lines on its next take (after a failed write). Dead letters go to a table, not a file.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeVar

import psycopg

from followerwatch.store.spool import SpoolCounts
from followerwatch.store.spool_base import SpoolStore
from followerwatch.store.spool_base import SpoolUnavailable as SpoolUnavailable
from followerwatch.store.spoolbatch import Batch, ranges

T = TypeVar("T")
Conn = psycopg.Connection[tuple[object, ...]]
DEAD_LETTER_TABLE = "spool_dead_letter"


class _Outages:
    """How many outages the spool's links have met, shared by them."""

    def __init__(self) -> None:
        self.count = 0


class _Link:
    """A lazily opened autocommit connection, replaced after an outage; one user at a time.

    (The store may not import the state package's own, state/pg/link.py: it is given a
    `connect` that opens an autocommit connection with the backend's timeouts.)
    """

    def __init__(self, connect: Callable[[], Conn], outages: _Outages) -> None:
        self._connect = connect
        self._conn: Conn | None = None
        self._lock = threading.RLock()
        # A connection opened before an outage another link met was most likely cut by it (a
        # restarted server): it is replaced before use, so the first use after an outage works.
        self._outages = outages
        self._opened_at = 0  # the outage count when the connection was opened

    @contextmanager
    def transaction(self) -> Iterator[Conn]:
        with self._lock:
            conn = self._conn
            try:
                if conn is not None and self._opened_at != self._outages.count:
                    conn.close()
                if conn is None or conn.closed or conn.broken:
                    self._opened_at = self._outages.count
                    conn = self._conn = self._connect()
                with conn.transaction():
                    yield conn
            except psycopg.OperationalError as exc:
                self._conn = None  # the next use reconnects
                self._outages.count += 1
                if conn is not None:
                    conn.close()
                raise SpoolUnavailable(f"the spool's PostgreSQL is unavailable: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class PgSpool:
    """A FIFO of line-protocol lines in the shared database; capped, dropping the oldest."""

    def __init__(
        self,
        connect: Callable[[], Conn],
        cap: int = 5_000_000,
        *,
        replica: str,
        claim_ttl: float = 30.0,
    ) -> None:
        """Open connections with `connect` (autocommit) when first used; take lines as
        `replica` for `claim_ttl` s."""
        self.path = "postgresql table spool"  # where it lives, for messages
        self.dead_letter_path = f"postgresql table {DEAD_LETTER_TABLE}"
        self.cap = cap
        self.replica = replica
        self.claim_ttl = claim_ttl
        outages = _Outages()
        self._link = _Link(connect, outages)
        # add_async's own connection (in a worker thread), so it never waits on the loop's.
        self._async_link = _Link(connect, outages)
        self.commits = 0  # transactions of add_async

    def close(self) -> None:
        """Close the connections."""
        self._link.close()
        self._async_link.close()

    def _tx(self, link: _Link | None = None) -> contextlib.AbstractContextManager[Conn]:
        return (link or self._link).transaction()

    def add(self, lines: Sequence[str]) -> int:
        """Append lines durably; returns how many of the oldest were dropped to fit the cap."""
        if not lines:
            return 0
        with self._tx() as conn:
            return self._append(conn, lines)

    async def add_async(self, lines: Sequence[str]) -> int:
        """`add`, committed in a worker thread on a connection of its own."""
        if not lines:
            return 0

        def run() -> int:
            with self._tx(self._async_link) as conn:
                dropped = self._append(conn, lines)
            self.commits += 1
            return dropped

        return await asyncio.to_thread(run)

    def _append(self, conn: Conn, lines: Sequence[str]) -> int:
        conn.execute("INSERT INTO spool (line) SELECT unnest(%s::text[])", (list(lines),))
        _bump(conn, "added", len(lines))
        # Numbers are unique, so the span bounds the size from above; count only near the cap.
        span = conn.execute("SELECT max(seq) - min(seq) + 1 FROM spool").fetchone()
        if span is None or span[0] is None or int(str(span[0])) <= self.cap:
            return 0
        overflow = _size(conn) - self.cap
        if overflow <= 0:
            return 0
        # Counted as deleted: another replica's add may drop some of the same lines at once.
        dropped = conn.execute(
            "DELETE FROM spool WHERE seq IN (SELECT seq FROM spool ORDER BY seq LIMIT %s)",
            (overflow,),
        ).rowcount
        _bump(conn, "dropped", dropped)
        return dropped

    def add_dropped(self, points: int) -> None:
        """Record points dropped before the spool (memory buffer full) in the ledger."""
        if points:
            with self._tx() as conn:
                _bump(conn, "added", points)
                _bump(conn, "dropped_disk_full", points)

    def take(self, max_lines: int, max_bytes: int = 2_000_000) -> Batch:
        """The oldest lines no other writer holds, at most `max_lines` and about `max_bytes`,
        claimed by this replica."""
        with self._tx() as conn:
            rows = conn.execute(
                "SELECT seq, line FROM spool WHERE claimed_by IS NULL OR claimed_by = %s"
                " OR claim_until < now() ORDER BY seq LIMIT %s FOR UPDATE SKIP LOCKED",
                (self.replica, max_lines),
            ).fetchall()
            seqs: list[int] = []
            lines: list[str] = []
            size = 0
            for seq, line in rows:
                text = str(line)
                if lines and size + len(text) > max_bytes:
                    break
                seqs.append(int(str(seq)))
                lines.append(text)
                size += len(text) + 1
            if seqs:
                conn.execute(
                    "UPDATE spool SET claimed_by = %s,"
                    " claim_until = now() + make_interval(secs => %s) WHERE seq = ANY(%s)",
                    (self.replica, self.claim_ttl, seqs),
                )
        return Batch(tuple((a, b - a) for a, b in ranges(seqs)), lines, size)

    def peek(self, max_lines: int, max_bytes: int = 2_000_000) -> list[tuple[int, str]]:
        """The oldest lines and their numbers (claimed, as by `take`)."""
        return self.take(max_lines, max_bytes).pairs()

    def ack(self, done: Batch | Sequence[int]) -> None:
        """These lines (a batch, or line numbers) are in InfluxDB: remove them."""
        spans = done.ranges() if isinstance(done, Batch) else ranges(done)
        if not spans:
            return
        with self._tx() as conn:
            removed = sum(
                conn.execute("DELETE FROM spool WHERE seq >= %s AND seq < %s", span).rowcount
                for span in spans
            )
            # Only lines still here count: a line two writers sent is written once.
            _bump(conn, "written", removed)

    def dead_letter(self, rejected: Batch | Sequence[tuple[int, str]], reason: str) -> None:
        """InfluxDB will never take these lines: move them to the dead-letter table, with why."""
        if isinstance(rejected, Batch):
            seqs = [seq for seq, _ in rejected.pairs()]
        else:
            seqs = [seq for seq, _ in rejected]
        with self._tx() as conn:
            moved = conn.execute(
                "WITH gone AS (DELETE FROM spool WHERE seq = ANY(%s) RETURNING seq, line)"
                f" INSERT INTO {DEAD_LETTER_TABLE} (seq, reason, line)"
                " SELECT seq, %s, line FROM gone",
                (seqs, reason),
            ).rowcount
            _bump(conn, "dead_lettered", moved)

    def dead_letters(self) -> list[tuple[str, str]]:
        """(reason, line) of every dead-lettered line, oldest first."""
        return self._read(
            lambda c: [
                (str(r), str(ln))
                for r, ln in c.execute(
                    f"SELECT reason, line FROM {DEAD_LETTER_TABLE} ORDER BY seq"
                ).fetchall()
            ]
        )

    def size(self) -> int:
        """Lines waiting (whoever holds them)."""
        return self._read(_size)

    def newest_with_prefix(self, lines: int, prefix: str) -> int:
        """How many of the newest `lines` lines start with `prefix` (a measurement and ",")."""
        row = self._read(
            lambda c: c.execute(
                "SELECT count(*) FROM (SELECT line FROM spool ORDER BY seq DESC LIMIT %s) t"
                " WHERE starts_with(line, %s)",
                (lines, prefix),
            ).fetchone()
        )
        return 0 if row is None else int(str(row[0]))

    def counts(self) -> SpoolCounts:
        """The ledger, read in one statement (so it balances while other replicas write)."""
        values = {
            str(name): int(str(value))
            for name, value in self._read(
                lambda c: c.execute(
                    "SELECT name, value FROM spool_counters"
                    " UNION ALL SELECT 'spooled', count(*) FROM spool"
                ).fetchall()
            )
        }
        return SpoolCounts(
            values["added"],
            values["written"],
            values["dropped"],
            values["dead_lettered"],
            values["spooled"],
            values["dropped_disk_full"],
        )

    def _read(self, query: Callable[[Conn], T]) -> T:
        with self._tx() as conn:
            return query(conn)


def _size(conn: Conn) -> int:
    row = conn.execute("SELECT count(*) FROM spool").fetchone()
    return 0 if row is None else int(str(row[0]))


def _bump(conn: Conn, name: str, by: int) -> None:
    conn.execute("UPDATE spool_counters SET value = value + %s WHERE name = %s", (by, name))


if TYPE_CHECKING:
    # mypy checks here that PgSpool is a SpoolStore, as the service's wiring of Spool does.
    _CONFORMS: type[SpoolStore] = PgSpool
