"""Local SQLite state: last counts, rule state and the event outbox, in one WAL-mode file."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from followerwatch.models import Event, EventKind

_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    platform TEXT NOT NULL, account TEXT NOT NULL, followers INTEGER NOT NULL,
    time TEXT NOT NULL, platform_id TEXT, handle TEXT,
    PRIMARY KEY (platform, account));
CREATE TABLE IF NOT EXISTS rule_state (
    platform TEXT NOT NULL, account TEXT NOT NULL, rule TEXT NOT NULL, state TEXT NOT NULL,
    PRIMARY KEY (platform, account, rule));
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, time TEXT NOT NULL,
    platform TEXT NOT NULL, account TEXT NOT NULL, rule TEXT NOT NULL, kind TEXT NOT NULL,
    value INTEGER NOT NULL, threshold INTEGER NOT NULL, message TEXT NOT NULL,
    stored INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS deliveries (
    event_id TEXT NOT NULL, notifier TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT,
    PRIMARY KEY (event_id, notifier));
"""


@dataclass(frozen=True, slots=True)
class LastSeen:
    """The last count stored for an account."""

    followers: int
    time: datetime
    platform_id: str | None
    handle: str | None


@dataclass(frozen=True, slots=True)
class Change:
    """Everything one observation changes, committed atomically."""

    platform: str
    account: str
    last: LastSeen
    rule_states: dict[str, str]
    events: tuple[Event, ...]


def _ts(value: datetime) -> str:
    return value.astimezone(UTC).isoformat()


class StateDB:
    """The service's durable memory; single-process, synchronous (local SQLite is fast)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def last_seen(self, platform: str, account: str) -> LastSeen | None:
        """The last stored count of an account, if any."""
        row = self._db.execute(
            "SELECT followers, time, platform_id, handle FROM accounts"
            " WHERE platform=? AND account=?",
            (platform, account),
        ).fetchone()
        if row is None:
            return None
        return LastSeen(row[0], datetime.fromisoformat(row[1]), row[2], row[3])

    def platform_ids(self, platform: str) -> dict[str, str]:
        """The stable platform ids learnt for a platform's accounts, by account name."""
        rows = self._db.execute(
            "SELECT account, platform_id FROM accounts"
            " WHERE platform=? AND platform_id IS NOT NULL",
            (platform,),
        )
        return dict(rows.fetchall())

    def rule_states(self, platform: str, account: str) -> dict[str, str]:
        """Serialised rule states of an account, by rule name."""
        rows = self._db.execute(
            "SELECT rule, state FROM rule_state WHERE platform=? AND account=?", (platform, account)
        )
        return dict(rows.fetchall())

    def commit(self, changes: Sequence[Change], notifiers: Iterable[str]) -> None:
        """Store counts, rule states and events, and queue a delivery per notifier, atomically."""
        names = list(notifiers)
        with self._tx():
            for ch in changes:
                self._db.execute(
                    "INSERT INTO accounts VALUES (?,?,?,?,?,?) ON CONFLICT (platform, account) DO"
                    " UPDATE SET followers=excluded.followers, time=excluded.time,"
                    " platform_id=COALESCE(excluded.platform_id, platform_id),"
                    " handle=COALESCE(excluded.handle, handle)",
                    (
                        ch.platform,
                        ch.account,
                        ch.last.followers,
                        _ts(ch.last.time),
                        ch.last.platform_id,
                        ch.last.handle,
                    ),
                )
                self._db.executemany(
                    "INSERT OR REPLACE INTO rule_state VALUES (?,?,?,?)",
                    [(ch.platform, ch.account, rule, st) for rule, st in ch.rule_states.items()],
                )
                for ev in ch.events:
                    cur = self._db.execute(
                        "INSERT OR IGNORE INTO events (id, time, platform, account, rule, kind,"
                        " value,"
                        " threshold, message) VALUES (?,?,?,?,?,?,?,?,?)",
                        (
                            ev.id,
                            _ts(ev.time),
                            ev.platform,
                            ev.account,
                            ev.rule,
                            str(ev.kind),
                            ev.value,
                            ev.threshold,
                            ev.message,
                        ),
                    )
                    if cur.rowcount:
                        self._db.executemany(
                            "INSERT OR IGNORE INTO deliveries (event_id, notifier) VALUES (?,?)",
                            [(ev.id, n) for n in names],
                        )

    def unstored_events(self, limit: int = 1000) -> list[Event]:
        """Events not yet confirmed in InfluxDB, oldest first."""
        rows = self._db.execute(
            "SELECT id, time, platform, account, rule, kind, value, threshold, message FROM events"
            " WHERE stored=0 ORDER BY seq LIMIT ?",
            (limit,),
        ).fetchall()
        return [_event(r) for r in rows]

    def mark_stored(self, event_ids: Iterable[str]) -> None:
        """Record that these events are in InfluxDB."""
        with self._tx():
            self._db.executemany("UPDATE events SET stored=1 WHERE id=?", [(i,) for i in event_ids])

    def pending_deliveries(self, notifier: str, limit: int = 500) -> list[Event]:
        """Events still to be delivered by one notifier, oldest first."""
        rows = self._db.execute(
            "SELECT e.id, e.time, e.platform, e.account, e.rule, e.kind, e.value, e.threshold,"
            " e.message FROM deliveries d JOIN events e ON e.id = d.event_id"
            " WHERE d.notifier=? AND d.status='pending' ORDER BY e.seq LIMIT ?",
            (notifier, limit),
        ).fetchall()
        return [_event(r) for r in rows]

    def mark_delivery(self, event_id: str, notifier: str, status: str, error: str | None) -> None:
        """Record one delivery attempt's outcome ('delivered', 'failed' or still 'pending')."""
        with self._tx():
            self._db.execute(
                "UPDATE deliveries SET status=?, attempts=attempts+1, last_error=?"
                " WHERE event_id=? AND notifier=?",
                (status, error, event_id, notifier),
            )

    def events(self, limit: int = 100) -> list[Event]:
        """The most recent events, newest last."""
        rows = self._db.execute(
            "SELECT id, time, platform, account, rule, kind, value, threshold, message FROM events"
            " ORDER BY seq DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [_event(r) for r in reversed(rows)]

    def delivery_counts(self) -> dict[str, int]:
        """How many deliveries are in each status."""
        rows = self._db.execute("SELECT status, count(*) FROM deliveries GROUP BY status")
        return dict(rows.fetchall())

    def _tx(self) -> _Tx:
        return _Tx(self._db)


class _Tx:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")


def _event(row: tuple[object, ...]) -> Event:
    return Event(
        id=str(row[0]),
        time=datetime.fromisoformat(str(row[1])),
        platform=str(row[2]),
        account=str(row[3]),
        rule=str(row[4]),
        kind=EventKind(str(row[5])),
        value=int(str(row[6])),
        threshold=int(str(row[7])),
        message=str(row[8]),
    )
