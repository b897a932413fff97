"""What a commit is, and the statements that write it (in the committer thread's transaction)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from datetime import datetime
from typing import NamedTuple

from followerwatch.disk.sqlite import insert_many
from followerwatch.models import Event, EventStatus
from followerwatch.state.rows import EVENT_COLS, N_EVENT_COLS, event_row, summary_value, ts
from followerwatch.state.values import SUMMARY_RULE, Change, HeldZero, LastSeen

StateRow = tuple[str, str, str, str]  # platform, account, rule, state


class Commit(NamedTuple):
    """A poll's changes and its events' routes, queued for the committer thread."""

    changes: Sequence[Change]
    routes: list[tuple[Event, list[str]]]
    keep: Mapping[tuple[str, str], float] | None
    # Suspect zeros to keep, and accounts whose held zeros are done with (confirmed or not).
    held: Sequence[HeldZero] = ()
    released: Sequence[tuple[str, str]] = ()
    # Last counts written behind (state/behind.py), flushed in this transaction.
    counts: Sequence[tuple[tuple[str, str], LastSeen]] = ()
    # Soft rule states written behind with them, by account and rule (WriteBehind.states).
    states: Mapping[tuple[str, str], Mapping[str, str]] | None = None


def routed(
    changes: Sequence[Change], route: Callable[[Event], Iterable[str]]
) -> list[tuple[Event, list[str]]]:
    """Each event with its notifiers, worked out on the loop (routing reads live config)."""
    return [(ev, list(route(ev))) for ch in changes for ev in ch.events]


# An existing state is updated in place (REPLACE deletes and inserts the row: about a third more
# CPU per row, which counts when a summary rule rewrites every account's state each cycle).
UPSERT_STATE = " ON CONFLICT (platform, account, rule) DO UPDATE SET state=excluded.state"


def write_group(db: sqlite3.Connection, group: list[Commit]) -> list[bool]:
    """Each queued commit's statements, in the committer's one transaction."""
    return [write_commit(db, commit) for commit in group]


def write_commit(db: sqlite3.Connection, commit: Commit) -> bool:
    """A commit's statements (in a transaction); whether it stored an event to deliver."""
    changes, keep = commit.changes, commit.keep or {}
    if commit.counts:
        write_behind(db, commit.counts, commit.states or {})
    # One statement per table for the whole batch; per key the order is as before
    # (count, history, rule states, closed conditions, then that key's events).
    counted = [ch for ch in changes if ch.last is not None]
    summaries, others = split_states(
        (
            ((ch.platform, ch.account), rule, st)
            for ch in changes
            for rule, st in ch.rule_states.items()
        ),
        {(ch.platform, ch.account) for ch in counted},
    )
    store_counts(db, counted, keep, summaries)
    write_states(db, others)
    db.executemany(
        "DELETE FROM active WHERE platform=? AND account=? AND rule=?",
        [(ch.platform, ch.account, rule) for ch in changes for rule in ch.closed],
    )
    if commit.released:
        db.executemany("DELETE FROM suspect_zeros WHERE platform=? AND account=?", commit.released)
    if commit.held:
        insert_many(
            db,
            "INSERT OR REPLACE INTO suspect_zeros",
            [(*h[:2], ts(h.time), *h[3:]) for h in commit.held],
        )
    new = False
    for ev, notifiers in commit.routes:
        new |= insert_event(db, ev, notifiers)
    return new


def write_behind(
    db: sqlite3.Connection,
    counts: Sequence[tuple[tuple[str, str], LastSeen]],
    states: Mapping[tuple[str, str], Mapping[str, str]],
) -> None:
    """Counts written behind, each with its account's summary; other soft states as rows."""
    # Every account with waiting soft states has a waiting count (WriteBehind.put), except at
    # close, where states of the flush under way come too: those go the way of write_states.
    summaries, others = split_states(
        ((key, rule, text) for key, rules in states.items() for rule, text in rules.items()),
        {key for key, _ in counts},
    )
    upsert_counts(db, [(*key, seen) for key, seen in counts], summaries)
    write_states(db, others)


def split_states(
    states: Iterable[tuple[tuple[str, str], str, str]], counted: Container[tuple[str, str]]
) -> tuple[dict[tuple[str, str], bytes | str], list[StateRow]]:
    """Summaries that go in their account's row with its count, and the other state rows."""
    summaries: dict[tuple[str, str], bytes | str] = {}
    others: list[StateRow] = []
    for key, rule, text in states:
        if rule == SUMMARY_RULE and key in counted:
            summaries[key] = summary_value(text)
        else:
            others.append((*key, rule, text))
    return summaries, others


def write_states(db: sqlite3.Connection, rows: Sequence[StateRow]) -> None:
    """Upsert rule-state rows; a summary without a count to ride with goes in both places."""
    insert_many(db, "INSERT INTO rule_state", rows, UPSERT_STATE)
    # Rare (a baseline seeded from InfluxDB, a state set by hand): the account's row, if it has
    # one, must not keep an older summary that reads would prefer.
    db.executemany(
        "UPDATE accounts SET summary=? WHERE platform=? AND account=?",
        [(summary_value(row[3]), row[0], row[1]) for row in rows if row[2] == SUMMARY_RULE],
    )


def store_counts(
    db: sqlite3.Connection,
    changes: Sequence[Change],
    keep: Mapping[tuple[str, str], float],
    summaries: Mapping[tuple[str, str], bytes | str] | None = None,
) -> None:
    """Upsert the last counts (and summaries); keep history rows for accounts that need them."""
    upsert_counts(db, [(ch.platform, ch.account, ch.last) for ch in changes if ch.last], summaries)
    kept = [
        (ch, keep[(ch.platform, ch.account)])
        for ch in changes
        if keep.get((ch.platform, ch.account), 0.0) > 0
    ]
    if not kept:
        return
    insert_many(
        db,
        "INSERT OR REPLACE INTO history",
        [
            (ch.platform, ch.account, when.timestamp(), n)
            for ch, _ in kept
            for when, n in ch.history
        ],
    )
    db.executemany(
        "DELETE FROM history WHERE platform=? AND account=? AND time<?",
        [
            (ch.platform, ch.account, ch.last.time.timestamp() - seconds)
            for ch, seconds in kept
            if ch.last
        ],
    )


def upsert_counts(
    db: sqlite3.Connection,
    counts: Sequence[tuple[str, str, LastSeen]],
    summaries: Mapping[tuple[str, str], bytes | str] | None = None,
) -> None:
    """Upsert accounts' last counts and summaries; what a reading lacks keeps the stored one."""
    times: dict[datetime, str] = {}  # a batch's readings share a handful of poll times
    summary = (summaries or {}).get
    rows = []
    for platform, account, last in counts:
        when = times.get(last.time)
        if when is None:
            when = times[last.time] = ts(last.time)
        rows.append(
            (
                platform,
                account,
                last.followers,
                when,
                last.platform_id,
                last.handle,
                summary((platform, account)),
            )
        )
    insert_many(
        db,
        "INSERT INTO accounts (platform, account, followers, time, platform_id, handle, summary)",
        rows,
        " ON CONFLICT (platform, account) DO"
        " UPDATE SET followers=excluded.followers, time=excluded.time,"
        " platform_id=COALESCE(excluded.platform_id, platform_id),"
        " handle=COALESCE(excluded.handle, handle),"
        " summary=COALESCE(excluded.summary, summary)",
    )


def insert_event(db: sqlite3.Connection, ev: Event, notifiers: Iterable[str]) -> bool:
    """Store an event and queue its deliveries; whether it is new and has any to make."""
    cur = db.execute(
        f"INSERT OR IGNORE INTO events ({EVENT_COLS}) VALUES ({','.join('?' * N_EVENT_COLS)})",
        event_row(ev),
    )
    if not cur.rowcount:
        return False  # already stored: its deliveries were queued the first time
    names = list(notifiers)
    if not names:
        # Nobody to deliver to, so nothing to enrich: keeps the outbox's look-up short.
        db.execute("UPDATE events SET enriched = 1 WHERE id = ?", (ev.id,))
    db.executemany(
        "INSERT OR IGNORE INTO deliveries (event_id, notifier) VALUES (?,?)",
        [(ev.id, n) for n in names],
    )
    if ev.status == EventStatus.FIRING:
        db.execute(
            "INSERT OR REPLACE INTO active VALUES (?,?,?,?,?)",
            (ev.platform, ev.account, ev.rule, ev.id, ev.time.timestamp()),
        )
    elif ev.status == EventStatus.RESOLVED:
        db.execute(
            "DELETE FROM active WHERE platform=? AND account=? AND rule=?",
            (ev.platform, ev.account, ev.rule),
        )
    return bool(names)
