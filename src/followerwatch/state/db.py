"""Local SQLite state: last counts, history, rule state, active conditions and the alert outbox."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from followerwatch.models import Event
from followerwatch.state.commit import (
    Change,
    Commit,
    HeldZero,
    LastSeen,
    insert_event,
    routed,
    write_group,
)
from followerwatch.state.deliveries import EVENT_COLS as _EVENT_COLS
from followerwatch.state.deliveries import OutboxState, migrate_events
from followerwatch.state.deliveries import event_from_row as _event
from followerwatch.state.sqlite import GroupCommitter, open_db

__all__ = ["Change", "HeldZero", "LastSeen", "StateDB"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    platform TEXT NOT NULL, account TEXT NOT NULL, followers INTEGER NOT NULL,
    time TEXT NOT NULL, platform_id TEXT, handle TEXT,
    PRIMARY KEY (platform, account));
CREATE TABLE IF NOT EXISTS history (
    platform TEXT NOT NULL, account TEXT NOT NULL, time REAL NOT NULL, followers INTEGER NOT NULL,
    PRIMARY KEY (platform, account, time)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rule_state (
    platform TEXT NOT NULL, account TEXT NOT NULL, rule TEXT NOT NULL, state TEXT NOT NULL,
    PRIMARY KEY (platform, account, rule));
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, time TEXT NOT NULL,
    platform TEXT NOT NULL, account TEXT NOT NULL, rule TEXT NOT NULL, kind TEXT NOT NULL,
    value INTEGER NOT NULL, threshold INTEGER NOT NULL, message TEXT NOT NULL,
    severity TEXT NOT NULL, status TEXT NOT NULL, labels TEXT NOT NULL,
    stored INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS deliveries (
    event_id TEXT NOT NULL, notifier TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0, next_attempt REAL NOT NULL DEFAULT 0, last_error TEXT,
    PRIMARY KEY (event_id, notifier));
CREATE INDEX IF NOT EXISTS deliveries_pending ON deliveries (notifier, status);
CREATE TABLE IF NOT EXISTS suspect_zeros (
    platform TEXT NOT NULL, account TEXT NOT NULL, time TEXT NOT NULL, following INTEGER,
    posts INTEGER, platform_id TEXT, handle TEXT, resolution INTEGER,
    PRIMARY KEY (platform, account, time)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS active (
    platform TEXT NOT NULL, account TEXT NOT NULL, rule TEXT NOT NULL, event_id TEXT NOT NULL,
    last_sent REAL NOT NULL, PRIMARY KEY (platform, account, rule));
"""


class StateDB(OutboxState):
    """The service's durable memory; single-process, synchronous (local SQLite is fast)."""

    def __init__(self, path: Path, *, reset_at: datetime | None = None) -> None:
        """Open (creating) the file; a damaged one raises StateFileError unless `reset_at`."""
        self.path = path
        self._db = open_db(path, _SCHEMA, check=True, reset_at=reset_at)
        migrate_events(self._db)
        # Poll commits fsync in this thread, with its own connection, off the event loop.
        self._committer: GroupCommitter[Commit, bool] = GroupCommitter(
            open_db(path, _SCHEMA), write_group, "state-committer"
        )
        # Accounts whose commit is queued: a poll of them reads only once it has landed.
        self._in_flight: dict[tuple[str, str], asyncio.Future[bool]] = {}

    @property
    def commits(self) -> int:
        """Transactions `commit_async` made (one per group of commits)."""
        return self._committer.commits

    def close(self) -> None:
        """Commit what is queued, stop the committer thread and close the databases."""
        self._committer.close()
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

    def platform_ids_of(self, platform: str, accounts: Iterable[str]) -> dict[str, str]:
        """The stable platform ids learnt for these accounts of a platform, by account name."""
        out: dict[str, str] = {}
        for part in _parts(list(dict.fromkeys(accounts))):
            rows = self._db.execute(
                "SELECT account, platform_id FROM accounts WHERE platform=? AND platform_id IS"
                f" NOT NULL AND account IN ({','.join('?' * len(part))})",
                (platform, *part),
            )
            out.update(rows.fetchall())
        return out

    def last_seen_many(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], LastSeen]:
        """`last_seen` of many (platform, account) keys in a few queries; absent keys left out."""
        out: dict[tuple[str, str], LastSeen] = {}
        times: dict[str, datetime] = {}  # accounts polled together share their stored time
        for platform, names in _by_platform(keys).items():
            for part in _parts(names):
                rows = self._db.execute(
                    "SELECT account, followers, time, platform_id, handle FROM accounts"
                    f" WHERE platform=? AND account IN ({','.join('?' * len(part))})",
                    (platform, *part),
                )
                for account, followers, time, pid, handle in rows.fetchall():
                    when = times.get(time)
                    if when is None:
                        when = times[time] = datetime.fromisoformat(time)
                    out[(platform, account)] = LastSeen(followers, when, pid, handle)
        return out

    def rule_states_many(
        self, keys: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], dict[str, str]]:
        """`rule_states` of many keys in a few queries; keys without state are left out."""
        out: dict[tuple[str, str], dict[str, str]] = {}
        for platform, names in _by_platform(keys).items():
            for part in _parts(names):
                rows = self._db.execute(
                    "SELECT account, rule, state FROM rule_state"
                    f" WHERE platform=? AND account IN ({','.join('?' * len(part))})",
                    (platform, *part),
                )
                for account, rule, state in rows.fetchall():
                    out.setdefault((platform, account), {})[rule] = state
        return out

    def rule_states(self, platform: str, account: str) -> dict[str, str]:
        """Serialised rule states of an account, by rule name."""
        rows = self._db.execute(
            "SELECT rule, state FROM rule_state WHERE platform=? AND account=?", (platform, account)
        )
        return dict(rows.fetchall())

    def set_rule_state(self, platform: str, account: str, rule: str, state: str) -> None:
        """Store one rule state outside a poll (campaign phases)."""
        with self._tx():
            self._db.execute(
                "INSERT OR REPLACE INTO rule_state VALUES (?,?,?,?)",
                (platform, account, rule, state),
            )

    def history(self, platform: str, account: str, since: datetime) -> list[tuple[datetime, int]]:
        """Stored counts of an account from `since` on, oldest first."""
        rows = self._db.execute(
            "SELECT time, followers FROM history WHERE platform=? AND account=? AND time>=?"
            " ORDER BY time",
            (platform, account, since.timestamp()),
        )
        return [(datetime.fromtimestamp(t, UTC), c) for t, c in rows.fetchall()]

    def history_many(
        self, keys: Iterable[tuple[str, str]], since: datetime
    ) -> dict[tuple[str, str], list[tuple[float, int]]]:
        """Stored (epoch seconds, count) of many accounts from `since` on, oldest first."""
        out: dict[tuple[str, str], list[tuple[float, int]]] = {}
        for platform, names in _by_platform(keys).items():
            for part in _parts(names):
                rows = self._db.execute(
                    "SELECT account, time, followers FROM history WHERE platform=? AND account"
                    f" IN ({','.join('?' * len(part))}) AND time>=? ORDER BY account, time",
                    (platform, *part, since.timestamp()),
                )
                for account, t, count in rows.fetchall():
                    out.setdefault((platform, account), []).append((t, count))
        return out

    def held_zeros(self) -> dict[tuple[str, str], list[HeldZero]]:
        """Every reading of 0 held as suspect, by account, oldest first."""
        out: dict[tuple[str, str], list[HeldZero]] = {}
        rows = self._db.execute(
            "SELECT platform, account, time, following, posts, platform_id, handle, resolution"
            " FROM suspect_zeros"
        )
        for row in rows.fetchall():
            held = HeldZero(row[0], row[1], datetime.fromisoformat(row[2]), *row[3:])
            out.setdefault((held.platform, held.account), []).append(held)
        for readings in out.values():
            readings.sort(key=lambda h: h.time)
        return out

    async def commit_async(
        self,
        changes: Sequence[Change],
        route: Callable[[Event], Iterable[str]],
        keep_history: dict[tuple[str, str], float] | None = None,
        *,
        held: Sequence[HeldZero] = (),
        released: Sequence[tuple[str, str]] = (),
    ) -> None:
        """`commit`, in the committer thread with every other commit queued (one fsync)."""
        done = self._committer.enqueue(
            Commit(changes, routed(changes, route), keep_history, held, released)
        )
        keys = [(ch.platform, ch.account) for ch in changes]
        for key in keys:
            self._in_flight[key] = done
        try:
            new = await done
        finally:
            for key in keys:
                if self._in_flight.get(key) is done:
                    del self._in_flight[key]
        if new and self.on_new_event is not None:
            self.on_new_event()

    async def settled(self, keys: Iterable[tuple[str, str]]) -> None:
        """Wait for the queued commits of these accounts, so what is read next includes them."""
        if not self._in_flight:
            return
        waits = {id(f): f for key in keys if (f := self._in_flight.get(key)) is not None}
        if waits:
            # Their outcome (an error included) is their own caller's; here only the wait counts.
            await asyncio.wait(waits.values())

    def add_events(self, events: Sequence[Event], route: Callable[[Event], Iterable[str]]) -> None:
        """Store events that no rule state goes with (repeats, test alerts)."""
        if not events:
            return  # most polls: no transaction (and no fsync) for nothing
        with self._tx():
            new = [insert_event(self._db, ev, route(ev)) for ev in events]
        if any(new) and self.on_new_event is not None:
            self.on_new_event()  # only sets a flag: the outbox runs once this transaction is done

    def active(self) -> list[tuple[Event, float]]:
        """Conditions still firing: their opening event and when they were last sent."""
        rows = self._db.execute(
            f"SELECT {', '.join('e.' + c.strip() for c in _EVENT_COLS.split(','))}, a.last_sent"
            " FROM active a JOIN events e ON e.id = a.event_id ORDER BY e.seq"
        ).fetchall()
        return [(_event(r[:-1]), float(r[-1])) for r in rows]

    def touch_active(self, event: Event, sent: float) -> None:
        """Record that an active condition was announced again."""
        with self._tx():
            self._db.execute(
                "UPDATE active SET last_sent=? WHERE platform=? AND account=? AND rule=?",
                (sent, event.platform, event.account, event.rule),
            )

    def unstored_events(self, limit: int = 1000) -> list[Event]:
        """Events not yet confirmed in InfluxDB, oldest first."""
        rows = self._db.execute(
            f"SELECT {_EVENT_COLS} FROM events WHERE stored=0 ORDER BY seq LIMIT ?", (limit,)
        ).fetchall()
        return [_event(r) for r in rows]

    def mark_stored(self, event_ids: Iterable[str]) -> None:
        """Record that these events are in InfluxDB."""
        with self._tx():
            self._db.executemany("UPDATE events SET stored=1 WHERE id=?", [(i,) for i in event_ids])

    def events(self, limit: int = 100) -> list[tuple[Event, dict[str, str]]]:
        """The most recent events (newest last) with each notifier's delivery status."""
        rows = self._db.execute(
            f"SELECT {_EVENT_COLS} FROM events ORDER BY seq DESC LIMIT ?", (limit,)
        ).fetchall()
        out = []
        for row in reversed(rows):
            status = dict(
                self._db.execute(
                    "SELECT notifier, status FROM deliveries WHERE event_id=?", (row[0],)
                ).fetchall()
            )
            out.append((_event(row), status))
        return out

    def _tx(self) -> _Tx:
        return _Tx(self._db)


class _Tx:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")


# Bound parameters per IN (...) query: well under SQLite's limit (999 before 3.32).
_PART = 500


def _parts(names: Sequence[str]) -> list[Sequence[str]]:
    return [names[i : i + _PART] for i in range(0, len(names), _PART)]


def _by_platform(keys: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for platform, account in dict.fromkeys(keys):
        out.setdefault(platform, []).append(account)
    return out
