"""The outbox's rows on PostgreSQL, shared by replicas: each pending delivery claimed by one.

A replica's `pending`/`pending_refs` claim what they return (`claimed_by`, `claim_until`),
a whole lane at a time: a lane (one notifier's deliveries for one account, or the service's
own events) with a live claim of another replica is left to it, so its order holds across
replicas. A replica re-claims its own claims on every pass (extending them); one that dies
leaves them to expire after `claim_ttl`, and another takes them up: at-least-once, with at
most one extra send per crash. Marks apply only to deliveries the replica still holds, so a
replica that lost its claim cannot record over its successor.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence

import psycopg
import structlog

from followerwatch.models import Event, Projection
from followerwatch.state.deliveries import (
    SERVICE_PLATFORM,
    Delivery,
    DeliveryRef,
    Mark,
)
from followerwatch.state.pg.link import Link
from followerwatch.state.rows import E_COLS, N_EVENT_COLS, event_from_row, projection_json

log = structlog.get_logger("followerwatch.outbox")

N = N_EVENT_COLS
LANE = f"CASE WHEN e.platform = '{SERVICE_PLATFORM}' THEN '' ELSE e.account END"

# The oldest pending deliveries of the notifier in lanes without a live claim of another
# replica (a window over each lane: one pass over the rows, no join of lanes with lanes, so a
# plan made on stale statistics stays linear), and whether this replica must (re)claim each:
# its own claims are extended only once a tenth of their TTL has passed.
_PICK = f"""
SELECT seq, event_id, platform, account, enriched, attempts, next_attempt,
    claimed_by IS DISTINCT FROM %(me)s
        OR claim_until < now() + make_interval(secs => %(ttl)s * 0.9) AS claim
FROM (
    SELECT e.seq, d.event_id, e.platform, e.account, e.enriched, d.attempts, d.next_attempt,
        d.claimed_by, d.claim_until,
        bool_or(coalesce(d.claimed_by <> %(me)s AND d.claim_until > now(), false))
            OVER (PARTITION BY e.platform, {LANE}) AS other
    FROM deliveries d JOIN events e ON e.id = d.event_id
    WHERE d.notifier = %(n)s AND d.status = 'pending') p
WHERE NOT other ORDER BY seq LIMIT %(limit)s
"""
# By primary key; the status is checked again on the row as it is now (one marked meanwhile
# is not handed out), and its attempts come from that row too.
_CLAIM = """
UPDATE deliveries d
SET claimed_by = %(me)s, claim_until = now() + make_interval(secs => %(ttl)s)
FROM unnest(%(ids)s::text[]) AS c(event_id)
WHERE d.event_id = c.event_id AND d.notifier = %(n)s AND d.status = 'pending'
RETURNING d.event_id, d.attempts, d.next_attempt
"""

_HEADS = f"""
SELECT DISTINCT ON (notifier, platform, lane) notifier, platform, lane, next_attempt FROM (
    SELECT d.notifier, e.platform, {LANE} AS lane, d.next_attempt, e.seq,
        bool_or(coalesce(d.claimed_by <> %s AND d.claim_until > now(), false))
            OVER (PARTITION BY d.notifier, e.platform, {LANE}) AS other
    FROM deliveries d JOIN events e ON e.id = d.event_id WHERE d.status = 'pending') p
WHERE NOT other
ORDER BY notifier, platform, lane, seq
"""


def _lock_key(notifier: str) -> int:
    """The advisory lock that serialises claims of one notifier's deliveries across replicas."""
    return 0x6677_0000_0000 + zlib.crc32(notifier.encode())


class PgDeliveries:
    """SQLite's Deliveries (state/deliveries.py) over the shared database, claimed per event."""

    def __init__(self, link: Link, replica: str, claim_ttl: float = 30.0) -> None:
        """Claims are made as `replica` and last `claim_ttl` seconds (the database's clock)."""
        self._link = link
        self._counts: dict[str, int] = {}
        self.replica = replica
        self.claim_ttl = claim_ttl
        self.ignored_marks = 0  # outcomes not recorded: the delivery was no longer ours

    def _claim(self, notifier: str, limit: int) -> list[tuple[object, ...]]:
        args = {"n": notifier, "me": self.replica, "limit": limit, "ttl": self.claim_ttl}
        with self._link.transaction() as conn:
            # Claims of one notifier go one at a time: a lane another replica is claiming in a
            # concurrent transaction would look free (its claims not yet visible) and be split.
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_lock_key(notifier),))
            rows = conn.execute(_PICK, args).fetchall()
            ids = [str(r[1]) for r in rows if r[7]]
            claimed = {}
            if ids:
                claimed = {str(i): (t, w) for i, t, w in conn.execute(_CLAIM, {**args, "ids": ids})}
        return [
            (*r[:5], *claimed[str(r[1])]) if r[7] else r[:7]
            for r in rows
            if not r[7] or str(r[1]) in claimed
        ]

    def pending(self, notifier: str, limit: int = 500) -> list[Delivery]:
        """Deliveries still to be made by one notifier, oldest event first: claimed by this
        replica (lanes another replica holds are left out)."""
        refs = self.pending_refs(notifier, limit)
        events = self.events_by_id([r.event_id for r in refs])
        return [Delivery(events[r.event_id], r.attempts, r.next_attempt, r.enriched) for r in refs]

    def pending_refs(self, notifier: str, limit: int = 5000) -> list[DeliveryRef]:
        """What a pass needs to pick lanes, claimed by this replica: oldest first."""
        return [
            DeliveryRef(str(i), str(p), str(a), bool(n), int(str(t)), float(str(w)))
            for _, i, p, a, n, t, w in self._claim(notifier, limit)
        ]

    def events_by_id(self, ids: Sequence[str]) -> dict[str, Event]:
        """Stored events (with their projections) by id."""
        if not ids:
            return {}
        with self._link.transaction() as conn:
            rows = conn.execute(
                f"SELECT {E_COLS}, e.projection FROM events e WHERE e.id = ANY(%s)", (list(ids),)
            ).fetchall()
        return {str(r[0]): event_from_row(r[:N], r[N]) for r in rows}

    def pending_heads(self) -> list[tuple[str, str, str, float]]:
        """(notifier, platform, account, next_attempt) of the oldest pending delivery per lane
        that no other replica holds."""
        with self._link.transaction() as conn:
            rows = conn.execute(_HEADS, (self.replica,)).fetchall()
        return [(str(n), str(p), str(a), float(str(t))) for n, p, a, t in rows]

    def mark_deliveries(self, marks: Sequence[Mark]) -> None:
        """Record many attempts in one transaction (those of deliveries this replica holds)."""
        if not marks:
            return
        with self._link.transaction() as conn:
            cur = conn.execute(
                "UPDATE deliveries d SET status = m.status, attempts = d.attempts + 1,"
                " last_error = m.error, next_attempt = m.next FROM unnest(%s::text[],"
                " %s::text[], %s::text[], %s::text[], %s::float8[])"
                " AS m(event_id, notifier, status, error, next)"
                " WHERE d.event_id = m.event_id AND d.notifier = m.notifier"
                " AND d.claimed_by = %s",
                (
                    [m.event_id for m in marks],
                    [m.notifier for m in marks],
                    [m.status for m in marks],
                    [m.error for m in marks],
                    [m.next_attempt for m in marks],
                    self.replica,
                ),
            )
        ignored = len(marks) - cur.rowcount
        if ignored > 0:
            # Another replica took these over (our claim expired): its outcome stands.
            self.ignored_marks += ignored
            log.warning("alert outcomes not recorded: claimed by another replica", marks=ignored)

    def unenriched(self, limit: int = 5000) -> list[Event]:
        """Events with a pending delivery that no replica has yet tried to enrich."""
        with self._link.transaction() as conn:
            rows = conn.execute(
                f"SELECT {E_COLS} FROM events e WHERE NOT e.enriched AND EXISTS (SELECT 1 FROM"
                " deliveries d WHERE d.event_id = e.id AND d.status = 'pending') ORDER BY e.seq"
                " LIMIT %s",
                (limit,),
            ).fetchall()
        return [event_from_row(r) for r in rows]

    def set_enrichment(self, projections: Mapping[str, Projection | None]) -> None:
        """Store each event's projection (or none) and mark it enriched, in one transaction."""
        if not projections:
            return
        with self._link.transaction() as conn:
            # The first replica's projection stands: every notifier and retry sends one text.
            conn.execute(
                "UPDATE events e SET enriched = true, projection = p.projection"
                " FROM unnest(%s::text[], %s::text[]) AS p(id, projection)"
                " WHERE e.id = p.id AND NOT e.enriched",
                (
                    list(projections),
                    [None if p is None else projection_json(p) for p in projections.values()],
                ),
            )

    def delivery_counts(self) -> dict[str, int]:
        """How many deliveries are in each status (the last known while PostgreSQL is away)."""
        try:
            with self._link.transaction() as conn:
                rows = conn.execute("SELECT status, count(*) FROM deliveries GROUP BY status")
                self._counts = {str(s): int(str(c)) for s, c in rows.fetchall()}
        except psycopg.Error:
            pass  # a gauge: the last known value is the honest answer until it is back
        return dict(self._counts)
