"""Stored events on PostgreSQL: the statements a fenced commit runs, and SQLite's Events API."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import psycopg

from followerwatch.models import Event, EventStatus
from followerwatch.state.doorbell import Doorbell
from followerwatch.state.pg.link import Link
from followerwatch.state.rows import E_COLS, EVENT_COLS, N_EVENT_COLS, event_from_row, event_row

# A connection or a cursor of the caller's transaction: both run one statement at a time.
Executor = psycopg.Connection[Any] | psycopg.Cursor[Any]

_INSERT = (
    f"INSERT INTO events ({EVENT_COLS}, shard, enriched)"
    f" VALUES ({', '.join(['%s'] * (N_EVENT_COLS + 2))}) ON CONFLICT (id) DO NOTHING RETURNING seq"
)


def insert_events(
    cur: Executor, shard: int, events_with_routes: Iterable[tuple[Event, Sequence[str]]]
) -> bool:
    """Store events of one shard and queue their deliveries, in the caller's (fenced)
    transaction; whether any new event has a delivery to make."""
    new = False
    for ev, notifiers in events_with_routes:
        names = list(notifiers)
        # Nobody to deliver to, so nothing to enrich: keeps the outbox's look-up short.
        stored = cur.execute(_INSERT, (*event_row(ev), shard, not names)).fetchone()
        if stored is None:
            continue  # already stored: its deliveries were queued the first time
        if names:
            cur.execute(
                "INSERT INTO deliveries (event_id, notifier) SELECT %s, unnest(%s::text[])"
                " ON CONFLICT DO NOTHING",
                (ev.id, names),
            )
            new = True
        if ev.status == EventStatus.FIRING:
            cur.execute(
                "INSERT INTO active (platform, account, shard, rule, event_id, last_sent)"
                " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (platform, account, rule)"
                " DO UPDATE SET shard = excluded.shard, event_id = excluded.event_id,"
                " last_sent = excluded.last_sent",
                (ev.platform, ev.account, shard, ev.rule, ev.id, ev.time.timestamp()),
            )
        elif ev.status == EventStatus.RESOLVED:
            cur.execute(
                "DELETE FROM active WHERE platform=%s AND account=%s AND rule=%s",
                (ev.platform, ev.account, ev.rule),
            )
    return new


class PgEvents:
    """SQLite's Events (state/events.py) over the shared database: same methods, same meaning."""

    def __init__(self, link: Link, doorbell: Doorbell, shard_of: Callable[[Event], int]) -> None:
        """Use `link`; ring `doorbell` when an event to deliver is stored; `shard_of` places
        events added outside a commit (the service's own get any fixed number)."""
        self._link = link
        self._doorbell = doorbell
        self._shard_of = shard_of

    def add_events(self, events: Sequence[Event], route: Callable[[Event], Iterable[str]]) -> None:
        """Store events that no rule state goes with (repeats, test alerts)."""
        if not events:
            return
        with self._link.transaction() as conn:
            new = False
            for ev in events:
                new |= insert_events(conn, self._shard_of(ev), [(ev, list(route(ev)))])
        if new:
            self._doorbell.ring()

    def active(self) -> list[tuple[Event, float]]:
        """Conditions still firing: their opening event and when they were last sent."""
        with self._link.transaction() as conn:
            rows = conn.execute(
                f"SELECT {E_COLS}, a.last_sent"
                " FROM active a JOIN events e ON e.id = a.event_id ORDER BY e.seq"
            ).fetchall()
        return [(event_from_row(r[:-1]), float(str(r[-1]))) for r in rows]

    def touch_active(self, event: Event, sent: float) -> None:
        """Record that an active condition was announced again."""
        with self._link.transaction() as conn:
            conn.execute(
                "UPDATE active SET last_sent=%s WHERE platform=%s AND account=%s AND rule=%s",
                (sent, event.platform, event.account, event.rule),
            )

    def unstored_events(self, limit: int = 1000) -> list[Event]:
        """Events not yet confirmed in InfluxDB, oldest first."""
        with self._link.transaction() as conn:
            rows = conn.execute(
                f"SELECT {EVENT_COLS} FROM events WHERE NOT stored ORDER BY seq LIMIT %s", (limit,)
            ).fetchall()
        return [event_from_row(r) for r in rows]

    def mark_stored(self, event_ids: Iterable[str]) -> None:
        """Record that these events are in InfluxDB."""
        ids = list(event_ids)
        if ids:
            with self._link.transaction() as conn:
                conn.execute("UPDATE events SET stored = true WHERE id = ANY(%s)", (ids,))

    def recent(self, limit: int = 100) -> list[tuple[Event, dict[str, str]]]:
        """The most recent events (newest last) with each notifier's delivery status."""
        with self._link.transaction() as conn:
            rows = conn.execute(
                f"SELECT {EVENT_COLS} FROM events ORDER BY seq DESC LIMIT %s", (limit,)
            ).fetchall()
            ids = [str(r[0]) for r in rows]
            status: dict[str, dict[str, str]] = {i: {} for i in ids}
            for event_id, notifier, st in conn.execute(
                "SELECT event_id, notifier, status FROM deliveries WHERE event_id = ANY(%s)",
                (ids,),
            ):
                status[str(event_id)][str(notifier)] = str(st)
        return [(event_from_row(r), status[str(r[0])]) for r in reversed(rows)]
