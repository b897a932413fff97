"""The shared state of one replica (PostgreSQL backend), assembled like SQLite's StateDB.

Reads a poll makes come from the mirror of the shards this replica leases (memory: a database
outage does not stop polling); what a poll changes goes to the mirror at once and to PostgreSQL
through the fenced, ordered queue (state/pg/committer.py), its events in the same transaction.
The outbox reads and claims deliveries in PostgreSQL, whoever's shard raised them.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import psycopg
import structlog

from followerwatch.models import Event
from followerwatch.state.doorbell import Doorbell
from followerwatch.state.pg.committer import Routes
from followerwatch.state.pg.connect import connect, migrate
from followerwatch.state.pg.deliveries import PgDeliveries
from followerwatch.state.pg.events import PgEvents, insert_events
from followerwatch.state.pg.link import Link
from followerwatch.state.pg.mirror import ShardMirror
from followerwatch.state.pg.store import PgState
from followerwatch.state.writes import Commit

log = structlog.get_logger("followerwatch.state")

Key = tuple[str, str]


class SharedEvents:
    """Events as the pipeline sees them: open conditions of the held shards from the mirror,
    new events through the fenced queue (an event of a shard not held goes straight in)."""

    def __init__(self, db: PgStateDB) -> None:
        """Serve `db`'s mirror and queue."""
        self._db = db
        self._opened: dict[str, Event] = {}  # open conditions' events, read once each

    def add_events(self, events: Sequence[Event], route: Callable[[Event], Iterable[str]]) -> None:
        """Store events no rule state goes with (repeats, campaigns, the service's own)."""
        direct: list[Event] = []
        by_shard: dict[int, Routes] = {}
        for ev in events:
            shard = self._db.shard_of((ev.platform, ev.account))
            if self._db.fences.get(shard) is None:
                direct.append(ev)
            else:
                by_shard.setdefault(shard, []).append((ev, list(route(ev))))
        for shard, routes in by_shard.items():
            self._db.submit(shard, Commit((), routes, None))
        if direct:
            try:
                self._db.stored_events.add_events(direct, route)
            except psycopg.Error as exc:
                self._db.lost_events += len(direct)
                log.warning(
                    "events lost: PostgreSQL is unavailable", events=len(direct), error=str(exc)
                )

    def active(self) -> list[tuple[Event, float]]:
        """Open conditions of the held shards, and when each was last sent."""
        rows = self._db.mirror.active()
        missing = [r.event_id for r in rows if r.event_id not in self._opened]
        if missing:
            # Unreadable now: read again at the next poll; the repeat waits until then.
            with contextlib.suppress(psycopg.Error):
                self._opened.update(self._db.deliveries.events_by_id(missing))
        live = {r.event_id for r in rows}
        for gone in [i for i in self._opened if i not in live]:
            del self._opened[gone]
        return [(self._opened[r.event_id], r.last_sent) for r in rows if r.event_id in self._opened]

    def touch_active(self, event: Event, sent: float) -> None:
        """Record a repeat: in the mirror now, in PostgreSQL through the fenced queue."""
        self._db.committer.touch_active(event, sent)

    def unstored_events(self, limit: int = 1000) -> list[Event]:
        """Events not yet in InfluxDB (none while PostgreSQL is unavailable)."""
        try:
            return self._db.stored_events.unstored_events(limit)
        except psycopg.Error:
            return []

    def mark_stored(self, event_ids: Iterable[str]) -> None:
        """Record that these events are in InfluxDB (again later if PostgreSQL is unavailable)."""
        try:
            self._db.stored_events.mark_stored(event_ids)
        except psycopg.Error as exc:
            log.warning("cannot mark events stored", error=str(exc))

    def recent(self, limit: int = 100) -> list[tuple[Event, dict[str, str]]]:
        """The newest events with their delivery status."""
        return self._db.stored_events.recent(limit)


class PgStateDB:
    """A replica's state over PostgreSQL: the StateBackend the pipeline and the outbox use."""

    def __init__(
        self,
        dsn: str,
        replica: str,
        *,
        shard_of: Callable[[Key], int],
        max_pending: int,
        claim_ttl: float,
    ) -> None:
        """Migrate the database and assemble; nothing is held until leases are loaded."""
        with connect(dsn) as conn:
            migrate(conn)
        self.dsn = dsn
        self.replica = replica
        self.shard_of = shard_of
        self.doorbell = Doorbell()
        self.fences: dict[int, int] = {}
        self.lost_events = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._rang = threading.Event()
        self._state = PgState(
            dsn,
            replica,
            shard_of=shard_of,
            fence_of=self.fences.get,
            write_events=self._write_events,
            max_pending=max_pending,
            after_commit=self._after_commit,
        )
        self.mirror: ShardMirror = self._state.mirror
        self.committer = self._state.committer
        self.accounts = self.mirror
        self.rules = self._state.rules
        self._link = Link(dsn)
        self.stored_events = PgEvents(
            self._link, self.doorbell, lambda ev: shard_of((ev.platform, ev.account))
        )
        self.events = SharedEvents(self)
        self.deliveries = PgDeliveries(Link(dsn), replica, claim_ttl)

    def submit(self, shard: int, commit: Commit) -> None:
        """Queue a commit of one held shard under its fence."""
        self._adopt()
        fence = self.fences.get(shard)
        if fence is not None:
            self.committer.submit(shard, fence, commit)

    def _adopt(self) -> None:
        if self._loop is None:
            with contextlib.suppress(RuntimeError):
                self._loop = asyncio.get_running_loop()

    def _write_events(self, cur: psycopg.Cursor[Any], shard: int, routes: Routes) -> None:
        if routes and insert_events(cur, shard, routes):
            self._rang.set()

    def _after_commit(self) -> None:
        # The outbox waits on the loop: ring it there, after the events are committed.
        if self._rang.is_set():
            self._rang.clear()
            loop = self._loop
            if loop is not None and not loop.is_closed():
                loop.call_soon_threadsafe(self.doorbell.ring)

    def load_shards(self, shards: Sequence[int]) -> None:
        """Read shards just leased into the mirror (blocking, one connection)."""
        self._state.load(*shards)

    def drop_shard(self, shard: int) -> None:
        """Forget a shard whose lease is gone."""
        self._state.drop(shard)

    def set_fences(self, fences: Mapping[int, int]) -> None:
        """The shards held now and their fences: commits of others are not written."""
        self._adopt()
        self.fences.clear()
        self.fences.update(fences)

    def refence(self, shard: int, fence: int) -> None:
        """This replica re-took the shard with nobody between: its queued work goes on."""
        self.fences[shard] = fence
        self.committer.refence(shard, fence)

    def event_kinds(self) -> list[tuple[str, int]]:
        """Events by kind, for /metrics (none while PostgreSQL is unavailable)."""
        try:
            with self._link.transaction() as conn:
                rows = conn.execute(
                    "SELECT kind, count(*) FROM events GROUP BY kind ORDER BY kind"
                ).fetchall()
        except psycopg.Error as exc:
            log.warning("cannot count events for /metrics", error=str(exc))
            return []
        return [(str(kind), int(str(n))) for kind, n in rows]

    def flush(self, timeout: float) -> bool:
        """Wait until the queued commits are written (False: `timeout` passed first)."""
        return self.committer.flush(timeout)

    def close(self) -> None:
        """Write what is queued (bounded wait), stop the committer, close the connections."""
        self._state.close()
        self._link.close()
