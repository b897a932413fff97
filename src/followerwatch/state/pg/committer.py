"""Polls' commits written to PostgreSQL behind the mirror, in order, checked against the leases.

A commit is applied to the mirror (state/pg/mirror.py) at once, so the next poll reads it, and
queued; a worker thread writes the queue in order, many commits per transaction. Each shard's part
is written only while this replica holds the shard's lease with the commit's fence (checked in the
same transaction, the lease row share-locked until it commits), so a replica that lost a shard
cannot overwrite its successor. A PostgreSQL outage keeps the queue (up to `max_pending` commits,
the oldest dropped and counted beyond it) and retries with backoff; the event loop never waits.
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import psycopg
import structlog

from followerwatch.models import Event
from followerwatch.state.pg.connect import connect
from followerwatch.state.pg.leases import holds
from followerwatch.state.pg.mirror import Rows, ShardMirror, rows_of, split_commit
from followerwatch.state.values import SUMMARY_RULE, Change, HeldZero
from followerwatch.state.writes import Commit, routed

log = structlog.get_logger("followerwatch.state")

Key = tuple[str, str]
Routes = list[tuple[Event, list[str]]]
# Writes a shard's events (and their deliveries) in the commit's transaction, so an alert and
# the rule state that raised it land together or not at all (the outbox's tables).
WriteEvents = Callable[[psycopg.Cursor[Any], int, Routes], None]

# Commits per transaction: enough to share one fsync among a cycle's batches.
MAX_GROUP = 256
MAX_PENDING = 10_000
OUTAGE = (psycopg.OperationalError, psycopg.InterfaceError)
BACKOFF = (0.05, 5.0)  # first and longest wait between attempts while PostgreSQL is away (s)


def no_events(cur: psycopg.Cursor[Any], shard: int, routes: Routes) -> None:
    """The default `WriteEvents`: events go nowhere (until the outbox's tables take them)."""
    return None


class _Outage(Exception):
    """PostgreSQL is away: `rest`, the parts not written, go back in front of the queue."""

    def __init__(self, rest: list[Queued], cause: Exception) -> None:
        super().__init__(str(cause))
        self.rest = rest
        self.cause = cause


class Queued(NamedTuple):
    """One shard's part of a commit, waiting for PostgreSQL."""

    shard: int
    fence: int
    rows: Rows
    routes: Routes


class PgCommitter:
    """Commits applied to the mirror now and written to PostgreSQL in order by a worker thread."""

    def __init__(
        self,
        dsn: str,
        replica: str,
        mirror: ShardMirror,
        *,
        shard_of: Callable[[Key], int],
        fence_of: Callable[[int], int | None],
        write_events: WriteEvents = no_events,
        max_pending: int = MAX_PENDING,
        max_group: int = MAX_GROUP,
        backoff: tuple[float, float] = BACKOFF,
        after_commit: Callable[[], None] | None = None,
    ) -> None:
        """Write as `replica` to `dsn`; `fence_of(shard)` is the fence held now (None: not held).

        `after_commit()` runs in the worker thread after each transaction that committed.
        """
        self._dsn = dsn
        self.replica = replica
        self.mirror = mirror
        self._shard_of = shard_of
        self._fence_of = fence_of
        self._write_events = write_events
        self.max_pending = max_pending
        self._max_group = max_group
        self._backoff = backoff
        self._after_commit = after_commit
        self._waiting = False  # an outage is under way (logged once)
        self._queue: deque[Queued] = deque()
        self._in_flight = 0
        self._cond = threading.Condition()
        self._closing = False
        self._stop = threading.Event()  # wakes the backoff wait at close
        self._conn: psycopg.Connection[Any] | None = None
        # Counters, for /metrics and tests.
        self.commits = 0  # transactions
        self.landed = 0  # queued parts written
        self.fenced_drops = 0  # parts refused: the lease was gone or had a newer fence
        self.dropped = 0  # parts dropped unwritten past `max_pending`
        self.rejected = 0  # parts PostgreSQL refused outright (logged)
        self.failures = 0  # attempts that met an outage
        self._refused: set[int] = set()  # shards whose fence check failed, for take_refused
        self._thread = threading.Thread(target=self._run, name="pg-committer", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        """Parts queued or being written."""
        with self._cond:
            return len(self._queue) + self._in_flight

    def submit(self, shard: int, fence: int, commit: Commit) -> None:
        """One shard's commit: into the mirror now, and queued for PostgreSQL."""
        rows = rows_of(commit)
        self.mirror.apply(shard, rows)
        self._queue_rows(Queued(shard, fence, rows, list(commit.routes)))

    def _queue_rows(self, part: Queued) -> None:
        with self._cond:
            self._queue.append(part)
            self._trim()
            self._cond.notify_all()

    async def commit_async(
        self,
        changes: Sequence[Change],
        route: Callable[[Event], Iterable[str]],
        keep_history: Mapping[Key, float] | None = None,
        *,
        held: Sequence[HeldZero] = (),
        released: Sequence[Key] = (),
    ) -> None:
        """A poll's changes, cut by shard and submitted with the fences held now (no wait)."""
        if not (changes or held or released):
            return
        commit = Commit(changes, routed(changes, route), keep_history, held, released)
        for shard, part in split_commit(commit, self._shard_of).items():
            fence = self._fence_of(shard)
            if fence is None:
                # Polled under a lease lost since: its successor's state must not change.
                with self._cond:
                    self.fenced_drops += 1
                continue
            self.submit(shard, fence, part)

    async def settled(self, keys: Iterable[Key]) -> None:
        """Reads include every commit submitted (the mirror has them): nothing to wait for."""
        return None

    def set_rule_state(self, platform: str, account: str, rule: str, state: str) -> None:
        """Store one rule state outside a poll (campaign phases), if its shard is held."""
        shard = self._shard_of((platform, account))
        fence = self._fence_of(shard)
        if fence is None:
            with self._cond:
                self.fenced_drops += 1
            return
        change = Change(platform, account, None, {rule: state}, ())
        self.submit(shard, fence, Commit([change], [], None))

    def touch_active(self, event: Event, sent: float) -> None:
        """Record that an open condition was announced again (repeats), if its shard is held."""
        key = (event.platform, event.account)
        shard = self._shard_of(key)
        fence = self._fence_of(shard)
        if fence is None:
            with self._cond:
                self.fenced_drops += 1
            return
        rows = Rows([], [], [], [], [], [], [], [], [(key, event.rule, sent)])
        self.mirror.apply(shard, rows)
        self._queue_rows(Queued(shard, fence, rows, []))

    def refence(self, shard: int, fence: int) -> None:
        """The shard was claimed again by this replica with nobody between (after an outage):
        its queued parts are still the newest, and go under the new fence."""
        with self._cond:
            self._queue = deque(
                part._replace(fence=fence) if part.shard == shard else part for part in self._queue
            )

    def take_refused(self) -> set[int]:
        """Shards whose writes the fence check refused since the last call (to drop and reload)."""
        with self._cond:
            out, self._refused = self._refused, set()
        return out

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued is written (False: `timeout` passed first)."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue and not self._in_flight, timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued (for at most `timeout` s), stop the thread, close its connection."""
        if not self.flush(timeout):
            log.warning("state commits left unwritten at close", pending=self.pending)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._stop.set()
        self._thread.join()

    def _trim(self) -> None:
        """Past `max_pending`, drop the oldest queued parts (under the lock).

        A group being written is not counted until it fails and comes back to the front, where
        it is the oldest: so what survives is always the newest `max_pending`.
        """
        while len(self._queue) > self.max_pending:
            self._queue.popleft()
            self.dropped += 1

    def _run(self) -> None:
        wait = self._backoff[0]
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._queue) or self._closing)
                if self._closing:
                    break
                group = [
                    self._queue.popleft() for _ in range(min(self._max_group, len(self._queue)))
                ]
                self._in_flight = len(group)
            try:
                self._write_group(group)
            except _Outage as exc:
                self._outage(exc.rest, exc.cause)
                if self._stop.wait(wait):
                    break
                wait = min(wait * 2, self._backoff[1])
                continue
            wait = self._backoff[0]
        if self._conn is not None:
            self._conn.close()

    def _outage(self, group: list[Queued], exc: Exception) -> None:
        """The parts go back in front of the queue, written first when PostgreSQL returns."""
        self._drop_conn()
        with self._cond:
            self.failures += 1
            self._queue.extendleft(reversed(group))
            self._in_flight = 0
            self._trim()
            self._cond.notify_all()
        if not self._waiting:
            # Once per outage: the retries that follow are counted in `failures`.
            self._waiting = True
            log.warning("state commits wait for PostgreSQL", error=str(exc), pending=self.pending)

    def _write_group(self, group: list[Queued]) -> None:
        """Write a group in one transaction; a part PostgreSQL refuses is isolated and dropped."""
        try:
            fenced = self._transaction(group)
        except OUTAGE as exc:
            raise _Outage(group, exc) from exc
        except psycopg.Error as exc:
            if len(group) == 1:
                log.error("PostgreSQL refused a state commit", error=str(exc), shard=group[0].shard)
                self._landed(rejected=1)
                return
            # One at a time: the others still land, in order; an outage meanwhile keeps the rest.
            for i, part in enumerate(group):
                try:
                    self._write_group([part])
                except _Outage as outage:
                    raise _Outage(group[i:], outage.cause) from outage.cause
            return
        self._landed(len(group) - fenced, fenced, commits=1)
        if self._waiting:
            self._waiting = False
            log.info("state commits written again", pending=self.pending)
        if self._after_commit is not None:
            self._after_commit()

    def _landed(
        self, landed: int = 0, fenced: int = 0, *, rejected: int = 0, commits: int = 0
    ) -> None:
        with self._cond:
            self.commits += commits
            self.landed += landed
            self.fenced_drops += fenced
            self.rejected += rejected
            self._in_flight = max(0, self._in_flight - landed - fenced - rejected)
            self._cond.notify_all()

    def _transaction(self, group: list[Queued]) -> int:
        """One transaction for the group; how many parts the fence check refused."""
        if self._conn is None:
            self._conn = connect(self._dsn)
        conn = self._conn
        fenced = 0
        with conn.transaction(), conn.cursor() as cur:
            # Every lease checked (and share-locked) first, in shard order: a claim or renewal
            # that locks lease rows in the same order cannot deadlock with this transaction.
            checked = {
                lease: holds(cur, lease[0], self.replica, lease[1])
                for lease in sorted({(part.shard, part.fence) for part in group})
            }
            # Pipelined: the statements go without waiting for each answer (a round trip each
            # made writing a cycle's counts take seconds); an error still aborts the whole.
            with conn.pipeline():
                for part in group:
                    if not checked[(part.shard, part.fence)]:
                        fenced += 1
                        continue
                    write_rows(cur, part.shard, part.rows)
                    if part.routes:
                        self._write_events(cur, part.shard, part.routes)
        for shard, fence in (lease for lease, ok in checked.items() if not ok):
            log.warning("state commit refused: lease lost", shard=shard, fence=fence)
            with self._cond:
                self._refused.add(shard)
        return fenced

    def _drop_conn(self) -> None:
        if self._conn is not None:
            # Already broken: the outage is what is reported.
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None


def write_rows(cur: psycopg.Cursor[Any], shard: int, rows: Rows) -> None:
    """A commit's rows for one shard, in SQLite's order (state/writes.py write_commit)."""
    if rows.counts:
        cur.executemany(
            "INSERT INTO accounts (platform, account, shard, followers, time, platform_id, handle,"
            " summary) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (platform, account) DO"
            " UPDATE SET shard = excluded.shard, followers = excluded.followers,"
            " time = excluded.time,"
            " platform_id = COALESCE(excluded.platform_id, accounts.platform_id),"
            " handle = COALESCE(excluded.handle, accounts.handle),"
            " summary = COALESCE(excluded.summary, accounts.summary)",
            [
                (*key, shard, s.followers, s.time, s.platform_id, s.handle, _blob(summary))
                for key, s, summary in rows.counts
            ],
        )
    if rows.states:
        cur.executemany(
            "INSERT INTO rule_state (platform, account, shard, rule, state)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (platform, account, rule) DO UPDATE"
            " SET state = excluded.state, shard = excluded.shard",
            [(*key, shard, rule, text.encode()) for key, rule, text in rows.states],
        )
        summaries = [
            (text.encode(), *key) for key, rule, text in rows.states if rule == SUMMARY_RULE
        ]
        if summaries:
            cur.executemany(
                "UPDATE accounts SET summary = %s WHERE platform = %s AND account = %s", summaries
            )
    if rows.history:
        cur.executemany(
            "INSERT INTO history (platform, account, shard, time, followers)"
            " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (platform, account, time) DO UPDATE"
            " SET followers = excluded.followers",
            [(*key, shard, t, n) for key, t, n in rows.history],
        )
    if rows.cutoffs:
        cur.executemany(
            "DELETE FROM history WHERE platform = %s AND account = %s AND time < %s",
            [(*key, before) for key, before in rows.cutoffs],
        )
    if rows.closed:
        cur.executemany(
            "DELETE FROM active WHERE platform = %s AND account = %s AND rule = %s",
            [(*key, rule) for key, rule in rows.closed],
        )
    if rows.released:
        cur.executemany(
            "DELETE FROM suspect_zeros WHERE platform = %s AND account = %s", rows.released
        )
    if rows.held:
        cur.executemany(
            "INSERT INTO suspect_zeros (platform, account, shard, time, following, posts,"
            " platform_id, handle, resolution) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (platform, account, time) DO UPDATE SET following = excluded.following,"
            " posts = excluded.posts, platform_id = excluded.platform_id,"
            " handle = excluded.handle, resolution = excluded.resolution",
            [(*h[:2], shard, *h[2:]) for h in rows.held],
        )
    # One statement each, in event order (few: a poll opens or resolves a handful).
    for key, rule, act in rows.conditions:
        if act is None:
            cur.execute(
                "DELETE FROM active WHERE platform = %s AND account = %s AND rule = %s",
                (*key, rule),
            )
        else:
            # An event stored before does not reopen its condition: the same event id keeps
            # the row (and its last_sent).
            cur.execute(
                "INSERT INTO active (platform, account, shard, rule, event_id, last_sent)"
                " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (platform, account, rule) DO UPDATE"
                " SET event_id = excluded.event_id, last_sent = excluded.last_sent,"
                " shard = excluded.shard WHERE active.event_id <> excluded.event_id",
                (*key, shard, rule, act.event_id, act.last_sent),
            )
    if rows.touched:
        cur.executemany(
            "UPDATE active SET last_sent = %s WHERE platform = %s AND account = %s AND rule = %s",
            [(sent, *key, rule) for key, rule, sent in rows.touched],
        )


def _blob(summary: str | None) -> bytes | None:
    return None if summary is None else summary.encode()
