"""The outbox's rows: pending deliveries, their outcomes, and the events' enrichment."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from followerwatch.models import Event, Projection
from followerwatch.state.rows import (
    E_COLS,
    N_EVENT_COLS,
    SERVICE_PLATFORM,
    event_from_row,
    immediate,
    parts,
    placeholders,
    projection_json,
)

N = N_EVENT_COLS  # where a query's columns after E_COLS start

__all__ = ["SERVICE_PLATFORM", "Deliveries", "Delivery", "DeliveryRef", "Mark"]


@dataclass(frozen=True, slots=True)
class Delivery:
    """One pending delivery of one event to one notifier."""

    event: Event
    attempts: int
    next_attempt: float
    # False until the outbox has tried to add a projection; never sent before that.
    enriched: bool = True


@dataclass(frozen=True, slots=True)
class DeliveryRef:
    """A pending delivery as a pass first sees it: enough to choose, not yet the event."""

    event_id: str
    platform: str
    account: str
    enriched: bool
    attempts: int
    next_attempt: float


@dataclass(frozen=True, slots=True)
class Mark:
    """The outcome of one delivery attempt: 'delivered', 'failed', or 'pending' until later."""

    event_id: str
    notifier: str
    status: str
    error: str | None = None
    next_attempt: float = 0.0


class Deliveries:
    """The deliveries table and the events' enrichment, over the loop's connection."""

    def __init__(self, db: sqlite3.Connection) -> None:
        """Read and write through the loop's connection."""
        self._db = db

    def pending(self, notifier: str, limit: int = 500) -> list[Delivery]:
        """Deliveries still to be made by one notifier, oldest event first."""
        rows = self._db.execute(
            f"SELECT {E_COLS}, e.projection, e.enriched, d.attempts, d.next_attempt"
            " FROM deliveries d JOIN events e ON e.id = d.event_id"
            " WHERE d.notifier=? AND d.status='pending' ORDER BY e.seq LIMIT ?",
            (notifier, limit),
        ).fetchall()
        return [
            Delivery(event_from_row(r[:N], r[N]), int(r[N + 2]), float(r[N + 3]), bool(r[N + 1]))
            for r in rows
        ]

    def pending_refs(self, notifier: str, limit: int = 5000) -> list[DeliveryRef]:
        """What a pass needs to pick lanes, without loading the events: oldest first."""
        rows = self._db.execute(
            "SELECT d.event_id, e.platform, e.account, e.enriched, d.attempts, d.next_attempt"
            " FROM deliveries d JOIN events e ON e.id = d.event_id"
            " WHERE d.notifier=? AND d.status='pending' ORDER BY e.seq LIMIT ?",
            (notifier, limit),
        ).fetchall()
        return [
            DeliveryRef(str(i), str(p), str(a), bool(n), int(t), float(w))
            for i, p, a, n, t, w in rows
        ]

    def events_by_id(self, ids: Sequence[str]) -> dict[str, Event]:
        """Stored events (with their projections) by id."""
        out: dict[str, Event] = {}
        for part in parts(ids):
            rows = self._db.execute(
                f"SELECT {E_COLS}, e.projection FROM events e"
                f" WHERE e.id IN ({placeholders(len(part))})",
                part,
            ).fetchall()
            out.update((str(r[0]), event_from_row(r[:N], r[N])) for r in rows)
        return out

    def pending_heads(self) -> list[tuple[str, str, str, float]]:
        """(notifier, platform, account, next_attempt) of the oldest pending delivery per lane.

        A lane is one account of one notifier; the service's own events share one lane, with
        account "".
        """
        # SQLite takes the bare columns from the row that holds MIN(e.seq).
        rows = self._db.execute(
            "SELECT d.notifier, e.platform, CASE WHEN e.platform = ? THEN '' ELSE e.account END"
            " AS lane, d.next_attempt, MIN(e.seq) FROM deliveries d JOIN events e"
            " ON e.id = d.event_id WHERE d.status='pending' GROUP BY d.notifier, e.platform, lane",
            (SERVICE_PLATFORM,),
        ).fetchall()
        return [(str(n), str(p), str(a), float(t)) for n, p, a, t, _ in rows]

    def mark_deliveries(self, marks: Sequence[Mark]) -> None:
        """Record many attempts in one transaction."""
        if not marks:
            return
        # Not fsynced (WAL, synchronous=NORMAL): a crash of the process loses nothing, and a
        # power cut can only lose the newest marks, so those deliveries are sent again — which
        # at-least-once allows. Events themselves stay fully synced when stored.
        self._db.execute("PRAGMA synchronous=NORMAL")
        try:
            with immediate(self._db):
                self._db.executemany(
                    "UPDATE deliveries SET status=?, attempts=attempts+1, last_error=?,"
                    " next_attempt=? WHERE event_id=? AND notifier=?",
                    [(m.status, m.error, m.next_attempt, m.event_id, m.notifier) for m in marks],
                )
        finally:
            self._db.execute("PRAGMA synchronous=FULL")

    def mark_delivery(
        self,
        event_id: str,
        notifier: str,
        status: str,
        error: str | None,
        next_attempt: float = 0.0,
    ) -> None:
        """Record one attempt: 'delivered', 'failed', or still 'pending' until `next_attempt`."""
        self.mark_deliveries([Mark(event_id, notifier, status, error, next_attempt)])

    def unenriched(self, limit: int = 5000) -> list[Event]:
        """Events with a pending delivery that the outbox has not yet tried to enrich."""
        rows = self._db.execute(
            f"SELECT {E_COLS} FROM events e WHERE e.enriched = 0 AND EXISTS (SELECT 1 FROM"
            " deliveries d WHERE d.event_id = e.id AND d.status = 'pending') ORDER BY e.seq"
            " LIMIT ?",
            (limit,),
        ).fetchall()
        return [event_from_row(r) for r in rows]

    def set_enrichment(self, projections: Mapping[str, Projection | None]) -> None:
        """Store each event's projection (or none) and mark it enriched, in one transaction."""
        if not projections:
            return
        with immediate(self._db):
            self._db.executemany(
                "UPDATE events SET enriched = 1, projection = ? WHERE id = ?",
                [
                    (None if p is None else projection_json(p), event_id)
                    for event_id, p in projections.items()
                ],
            )

    def delivery_counts(self) -> dict[str, int]:
        """How many deliveries are in each status."""
        rows = self._db.execute("SELECT status, count(*) FROM deliveries GROUP BY status")
        return dict(rows.fetchall())
