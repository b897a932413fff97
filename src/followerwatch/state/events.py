"""Stored events: added outside a poll, still-firing conditions, and their InfluxDB copy."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence

from followerwatch.models import Event
from followerwatch.state.doorbell import Doorbell
from followerwatch.state.rows import E_COLS, EVENT_COLS, event_from_row, immediate
from followerwatch.state.writes import insert_event


class Events:
    """The events and active tables, over the loop's connection."""

    def __init__(self, db: sqlite3.Connection, doorbell: Doorbell) -> None:
        """Use the loop's connection; ring `doorbell` whenever an event to deliver is stored."""
        self._db = db
        self._doorbell = doorbell

    def add_events(self, events: Sequence[Event], route: Callable[[Event], Iterable[str]]) -> None:
        """Store events that no rule state goes with (repeats, test alerts)."""
        if not events:
            return  # most polls: no transaction (and no fsync) for nothing
        with immediate(self._db):
            new = [insert_event(self._db, ev, route(ev)) for ev in events]
        if any(new):
            self._doorbell.ring()  # only sets a flag: the outbox runs once the loop is free

    def active(self) -> list[tuple[Event, float]]:
        """Conditions still firing: their opening event and when they were last sent."""
        rows = self._db.execute(
            f"SELECT {E_COLS}, a.last_sent"
            " FROM active a JOIN events e ON e.id = a.event_id ORDER BY e.seq"
        ).fetchall()
        return [(event_from_row(r[:-1]), float(r[-1])) for r in rows]

    def touch_active(self, event: Event, sent: float) -> None:
        """Record that an active condition was announced again."""
        with immediate(self._db):
            self._db.execute(
                "UPDATE active SET last_sent=? WHERE platform=? AND account=? AND rule=?",
                (sent, event.platform, event.account, event.rule),
            )

    def unstored_events(self, limit: int = 1000) -> list[Event]:
        """Events not yet confirmed in InfluxDB, oldest first."""
        rows = self._db.execute(
            f"SELECT {EVENT_COLS} FROM events WHERE stored=0 ORDER BY seq LIMIT ?", (limit,)
        ).fetchall()
        return [event_from_row(r) for r in rows]

    def mark_stored(self, event_ids: Iterable[str]) -> None:
        """Record that these events are in InfluxDB."""
        with immediate(self._db):
            self._db.executemany("UPDATE events SET stored=1 WHERE id=?", [(i,) for i in event_ids])

    def recent(self, limit: int = 100) -> list[tuple[Event, dict[str, str]]]:
        """The most recent events (newest last) with each notifier's delivery status."""
        rows = self._db.execute(
            f"SELECT {EVENT_COLS} FROM events ORDER BY seq DESC LIMIT ?", (limit,)
        ).fetchall()
        out = []
        for row in reversed(rows):
            status = dict(
                self._db.execute(
                    "SELECT notifier, status FROM deliveries WHERE event_id=?", (row[0],)
                ).fetchall()
            )
            out.append((event_from_row(row), status))
        return out
