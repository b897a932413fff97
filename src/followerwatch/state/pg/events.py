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

# A batch of events in one statement, in their order (which their `seq` keeps).
_TYPES = (
    "text", "text", "text", "text", "text", "text", "bigint", "bigint", "text", "text", "text",
    "text", "float8", "bool",
)  # fmt: skip
_INSERT = (
    f"INSERT INTO events ({EVENT_COLS}, enriched, shard)"
    f" SELECT {', '.join(f'c{i}' for i in range(len(_TYPES)))}, %s FROM unnest("
    + ", ".join(f"%s::{t}[]" for t in _TYPES)
    + f") WITH ORDINALITY AS u({', '.join(f'c{i}' for i in range(len(_TYPES)))}, n)"
    " ORDER BY n ON CONFLICT (id) DO NOTHING RETURNING id"
)
assert len(_TYPES) == N_EVENT_COLS + 1


def insert_events(
    cur: Executor, shard: int, events_with_routes: Iterable[tuple[Event, Sequence[str]]]
) -> bool:
    """Store events of one shard and queue their deliveries, in the caller's (fenced)
    transaction; whether any new event has a delivery to make."""
    routed = [(ev, list(names)) for ev, names in events_with_routes]
    if not routed:
        return False
    # Nobody to deliver to, so nothing to enrich: keeps the outbox's look-up short.
    rows = [(*event_row(ev), not names) for ev, names in routed]
    new = {str(r[0]) for r in cur.execute(_INSERT, (shard, *map(list, zip(*rows, strict=True))))}
    # Events stored already had their deliveries queued the first time.
    fresh = [(ev, names) for ev, names in routed if ev.id in new]
    pairs = [(ev.id, name) for ev, names in fresh for name in names]
    if pairs:
        cur.execute(
            "INSERT INTO deliveries (event_id, notifier)"
            " SELECT * FROM unnest(%s::text[], %s::text[]) ON CONFLICT DO NOTHING",
            ([i for i, _ in pairs], [n for _, n in pairs]),
        )
    # Each condition ends as the last of its new events left it (as one insert after another).
    last: dict[tuple[str, str, str], Event] = {}
    for ev, _ in fresh:
        if ev.status in (EventStatus.FIRING, EventStatus.RESOLVED):
            last[(ev.platform, ev.account, ev.rule)] = ev
    firing = [ev for ev in last.values() if ev.status == EventStatus.FIRING]
    if firing:
        cur.execute(
            "INSERT INTO active (platform, account, shard, rule, event_id, last_sent)"
            " SELECT p, a, %s, r, i, t FROM unnest(%s::text[], %s::text[], %s::text[],"
            " %s::text[], %s::float8[]) AS u(p, a, r, i, t)"
            " ON CONFLICT (platform, account, rule) DO UPDATE SET shard = excluded.shard,"
            " event_id = excluded.event_id, last_sent = excluded.last_sent",
            (
                shard,
                [ev.platform for ev in firing],
                [ev.account for ev in firing],
                [ev.rule for ev in firing],
                [ev.id for ev in firing],
                [ev.time.timestamp() for ev in firing],
            ),
        )
    resolved = [ev for ev in last.values() if ev.status == EventStatus.RESOLVED]
    if resolved:
        cur.execute(
            "DELETE FROM active a USING unnest(%s::text[], %s::text[], %s::text[]) AS u(p, c, r)"
            " WHERE a.platform = u.p AND a.account = u.c AND a.rule = u.r",
            (
                [ev.platform for ev in resolved],
                [ev.account for ev in resolved],
                [ev.rule for ev in resolved],
            ),
        )
    return bool(pairs)


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
            by_shard: dict[int, list[tuple[Event, Sequence[str]]]] = {}
            for ev in events:
                by_shard.setdefault(self._shard_of(ev), []).append((ev, list(route(ev))))
            new = False
            for shard, routed in by_shard.items():
                new |= insert_events(conn, shard, routed)
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
