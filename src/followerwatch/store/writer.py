"""Points → durable spool → InfluxDB in coalesced batches, every write error handled.

The spool is SQLite's (a file) or PostgreSQL's (shared by replicas). While the latter is down,
points wait in memory (bounded, counted if dropped) and go straight to InfluxDB; every
background pass retries the spool, which then takes what InfluxDB has not.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import NamedTuple

import psycopg
import structlog

from followerwatch.clock import Clock
from followerwatch.disk.full import MemoryBuffer
from followerwatch.errors import StoreAuthError, StoreError
from followerwatch.models import Event, EventKind, EventStatus, Point, Severity
from followerwatch.store.base import Store, StoreState
from followerwatch.store.held import HeldLines
from followerwatch.store.lineprotocol import encode
from followerwatch.store.pollpoints import PollPoints, encode_lines
from followerwatch.store.schema import FOLLOWERS, event_point, spool_point
from followerwatch.store.spool import SpoolCounts
from followerwatch.store.spool_base import SpoolStore, SpoolUnavailable
from followerwatch.store.spoolbatch import Batch
from followerwatch.store.writehealth import AUTH_RECHECK as AUTH_RECHECK
from followerwatch.store.writehealth import WriteHealth

log = structlog.get_logger("followerwatch.writer")

BATCH_LINES = 5_000
BATCH_BYTES = 2_000_000
# After a write, lines short of a full batch wait this long (s) for others to join them: influxd
# ingests big batches far cheaper than many small ones. A full batch goes at once.
LINGER = 0.25
SETTLE_WAIT = 10.0  # s: at shutdown, the longest the last coalesced write may take
HEALTH_EVERY = 10.0


class Unwritten(NamedTuple):
    """What this process spooled that InfluxDB has not taken: its readings, its lines, and why;
    and the readings InfluxDB rejected for good (moved to the dead-letter file), and why."""

    readings: int
    lines: int
    reason: str
    rejected: int = 0
    rejected_reason: str = ""
    dead_letter: str = ""


class Writer:
    """Spools every point before InfluxDB and removes it only after a 2xx answer.

    Writes are coalesced: one at a time, of up to BATCH_LINES spooled lines; after one, lines
    short of a full batch wait up to LINGER for more, so concurrent groups share a write.
    While the spool is unavailable, what memory holds is written at once instead, unspooled.
    """

    def __init__(
        self,
        store: Store,
        state: StoreState,
        spool: SpoolStore,
        clock: Clock,
        *,
        backoff_initial: float = 1.0,
        # A returning InfluxDB gets the backlog within seconds; Retry-After may ask for longer.
        backoff_max: float = 15.0,
        rng: random.Random | None = None,
        raise_event: Callable[[Event], None] | None = None,
        health_every: float | None = HEALTH_EVERY,
        buffer: MemoryBuffer | None = None,
    ) -> None:
        self.store = store
        self._last_health = 0.0
        self._health_every = health_every
        self.state = state
        self.spool = spool
        self.clock = clock
        self.health = WriteHealth(
            clock,
            backoff_initial=backoff_initial,
            backoff_max=backoff_max,
            rng=rng or random.Random(),
            raise_event=raise_event,
        )
        self._lock = asyncio.Lock()
        self.rejected = 0  # points that could not even be encoded
        self._added = 0  # lines this process put in the spool (the newest ones)
        # Readings (followers lines) InfluxDB rejected for good while this process ran, and why.
        self.dead_lettered = 0
        self._dead_reason = ""
        # While the disk is full or the spool's database down, lines wait in memory (bounded).
        self.held = HeldLines(spool, buffer or MemoryBuffer())
        self._last_write = -LINGER  # loop time the last write went out (its batch was taken)
        self._queued = 0  # lines spooled by write() since a write last took its batch (about)
        self._drainer: asyncio.Task[None] | None = None  # writes the coalesced lines later
        self._full = asyncio.Event()  # a full batch waits: the drainer need not wait longer
        self._closing = False  # shutting down: nothing waits for a batch any more

    @property
    def backlog(self) -> int:
        """Lines waiting for InfluxDB (while the spool is unavailable: as last read, and those
        held in memory)."""
        if self.held.outage is None:
            try:
                return self.spool.size()
            except SpoolUnavailable as exc:
                self.held.unavailable(exc)
        return self.held.counts().spooled + self.held.waiting()[0]

    def counts(self) -> SpoolCounts:
        """The spool's ledger (with drops a full disk has kept it from recording yet)."""
        return self.held.counts()

    @property
    def disk_problem(self) -> str | None:
        """Why lines wait in memory ("disk full: ..."), or None."""
        return self.held.problem

    @property
    def spool_problem(self) -> str | None:
        """Why the spool takes nothing now ("spool unavailable: ..."), or None."""
        return self.held.outage

    @property
    def healthy(self) -> bool:
        """False while InfluxDB refuses the credentials or keeps failing."""
        return not self.health.auth_failed and self.health.failures == 0

    @property
    def auth_failed(self) -> bool:
        """InfluxDB refused the credentials (the writes wait for an auth recheck)."""
        return self.health.auth_failed

    @property
    def last_error(self) -> str | None:
        """The last write failure, until a write works."""
        return self.health.last_error

    async def write(self, points: Sequence[Point]) -> None:
        """Spool the points (durably), then try to drain the spool; never raises."""
        readings = len(points.observations) if isinstance(points, PollPoints) else 0
        lines = self._lines(points)
        now = self.clock.now()
        every = self._health_every
        due = every is not None and now.timestamp() - self._last_health >= every
        if due and self.held.outage is None:
            # The ledger itself, for the service-health dashboard (spooled like any point).
            health = self._health_line(now)
            if health is not None:
                self._last_health = now.timestamp()
                lines.append(health)
        if not await self._spool_lines(lines, readings):
            if self.held.outage is not None:
                await self._send_held()  # polls reach InfluxDB while the spool is down
            return
        # Spooled, so acknowledged: what is left is when InfluxDB gets them.
        self._queued += len(lines)
        if self._lock.locked() or self._drainer is not None:
            # A write is under way or lines wait for the next: these join that (larger) batch.
            self._drain_soon()
        elif await self._drain(force=False, eager=True):
            self._drain_soon()  # an idle writer sent at once; what arrived meanwhile waits

    def _health_line(self, now: datetime) -> str | None:
        """The ledger's point, or None while the state database or the spool is down."""
        try:
            pending = self.state.deliveries.delivery_counts().get("pending", 0)
        except psycopg.OperationalError as exc:
            self.health.state_failed(exc)
            return None
        counts = self.counts()
        if self.held.outage is not None:
            return None  # the ledger could not be read: no stale copy goes out
        return encode(spool_point(counts, now, pending), self.store.precision)

    def drop(self, points: Sequence[Point]) -> None:
        """Count points that cannot be kept (disk and memory buffer full) as dropped."""
        self.held.drop(len(self._lines(points)))

    async def _spool_lines(self, lines: list[str], readings: int) -> bool:
        """Add lines to the spool, or hold them in memory while the disk is full; spooled?"""
        dropped = await self.held.add(lines, readings)
        if dropped is not None:
            self._added += len(lines)
        if dropped:
            log.error(
                "spool full: the oldest points were dropped", dropped_now=dropped, **self._ledger()
            )
            self.health.event(
                EventKind.SPOOL_OVERFLOW,
                EventStatus.ONCE,
                Severity.CRITICAL,
                f"followerwatch spool full: dropped the {dropped:,} oldest points",
                dropped,
            )
        return dropped is not None

    async def unwritten(self) -> Unwritten | None:
        """After one more flush: what this process spooled that is still waiting, or None."""
        await self.flush()  # a backoff in force (a write failed just now) makes this a no-op
        try:
            if self.held.outage is not None:
                raise SpoolUnavailable(self.held.outage)
            # The spool drains oldest first, so what waits of this process's lines is the newest.
            lines = min(self.spool.size(), self._added)
            readings = self.spool.newest_with_prefix(lines, FOLLOWERS + ",") if lines else 0
        except SpoolUnavailable as exc:
            # What the spool holds cannot be counted now; what memory holds is still waiting.
            self.held.unavailable(exc)
            lines, readings = self.held.waiting()
        if not lines and not self.dead_lettered:
            return None
        reason = (
            self.last_error
            or self.disk_problem
            or self.spool_problem
            or "InfluxDB has not taken them yet"
        )
        dead = str(self.spool.dead_letter_path)
        return Unwritten(readings, lines, reason, self.dead_lettered, self._dead_reason, dead)

    async def settle(self) -> int:
        """At shutdown: spool what memory holds if the disk allows; the readings lost if not."""
        if (drainer := self._drainer) is not None:
            # Lines waiting for a batch go now; past the bound they stay spooled for the next
            # run (a cancelled write is not acked).
            self._closing = True
            self._full.set()
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(drainer, SETTLE_WAIT)
        async with self._lock:
            with contextlib.suppress(sqlite3.Error, OSError):
                await self.held.respool(self._ledger)
            if self.held.outage is not None:
                await self._send_held_locked(force=True)  # one last try, backoff or not
        return self.held.lost()

    def _lines(self, points: Sequence[Point]) -> list[str]:
        """Points as line protocol; those that cannot be encoded are counted and left out."""
        lines, rejected = encode_lines(points, self.store.precision)
        self.rejected += rejected
        return lines

    async def flush(self) -> None:
        """Write spooled lines oldest first until empty, an error, or a backoff in force."""
        await self._drain(force=True)

    async def _drain(self, *, force: bool, eager: bool = False) -> bool:
        """`flush`; unless forced, a partial batch waits until LINGER after the last write
        (an eager drain's first one excepted); True if lines were left to wait so."""
        async with self._lock:
            try:
                if not await self._spool_back() or not await self.held.respool(self._ledger):
                    if self.held.outage is not None:
                        await self._send_held_locked()
                    return False  # the disk is still full: acks and events would fail as well
                await self._spool_events()
                if self.health.backing_off():
                    return False
                while batch := self.spool.take(BATCH_LINES, BATCH_BYTES):
                    self.held.reachable()
                    now = self._loop_time()
                    wait = not (force or eager or _full(batch))
                    if wait and now < self._last_write + LINGER:
                        self._queued = len(batch)  # the truth (the cap may have dropped some)
                        return True
                    self._last_write, eager = now, False
                    self._queued = max(0, self._queued - len(batch))
                    try:
                        await self._write(batch)
                    except StoreError as exc:
                        self.health.failed(exc, self._ledger)
                        return False
                    self.health.recovered(lambda: self.backlog, self._ledger)
                self.held.recovered()  # every ack went through: the disk takes writes again
            except SpoolUnavailable as exc:
                # This pass is skipped (logged once per outage); the next one tries again.
                self.held.unavailable(exc)
            except (sqlite3.Error, OSError) as exc:
                # An ack or dead-letter the disk refused: those lines are re-sent later, and
                # InfluxDB stores a re-sent point once.
                self.held.failed(exc)
            return False

    async def _spool_back(self) -> bool:
        """Whether the spool is reachable: during an outage, asked off the event loop (a
        connection attempt may take its whole timeout)."""
        if self.held.outage is None:
            return True
        try:
            await asyncio.to_thread(self.spool.size)
        except SpoolUnavailable as exc:
            self.held.unavailable(exc)
            return False
        self.held.reachable()
        return True

    async def _send_held(self) -> None:
        """`_send_held_locked`, once the write under way is done."""
        async with self._lock:
            await self._send_held_locked()

    async def _send_held_locked(self, *, force: bool = False) -> None:
        """While the spool is unavailable: write what memory holds straight to InfluxDB, oldest
        first, until none is left, an error, or (unless forced) a backoff in force."""
        while self.held.outage is not None and (lines := self.held.head(BATCH_LINES)):
            if not force and self.health.backing_off():
                return
            rejected: list[str] = []
            try:
                await self._write(Batch(((0, len(lines)),), lines, _bytes(lines)), rejected)
            except StoreError as exc:
                self.health.failed(exc, self._ledger)
                return
            self.health.recovered(lambda: self.backlog, self._ledger)
            self.held.sent(len(lines))
            if rejected:
                self.held.reject(rejected)

    def _drain_soon(self) -> None:
        """Make sure a drainer writes the waiting lines within LINGER (at once when full)."""
        if self._drainer is None:
            self._drainer = asyncio.get_running_loop().create_task(self._drain_later())
        elif self._queued >= BATCH_LINES:
            self._full.set()

    async def _drain_later(self) -> None:
        try:
            while True:
                wait = self._last_write + LINGER - self._loop_time()
                if wait > 0 and self._queued < BATCH_LINES and not self._closing:
                    self._full.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._full.wait(), timeout=wait)
                if not await self._drain(force=self._closing):
                    return
        except Exception:  # the lines stay spooled, for the next write or the run() loop
            log.exception("writer drain error")
        finally:
            if self._drainer is asyncio.current_task():
                self._drainer = None

    @staticmethod
    def _loop_time() -> float:
        # The event loop's clock, which its timeouts run on (the injected clock may stand still).
        return asyncio.get_running_loop().time()

    async def _spool_events(self) -> None:
        # Events live in the state database first; spool their points, then mark them.
        try:
            events = self.state.events.unstored_events()
        except psycopg.OperationalError as exc:
            self.health.state_failed(exc)  # their points wait there: the next pass copies them
            return
        self.health.state_ok()
        if events:
            lines = [encode(event_point(e), self.store.precision) for e in events]
            await self.spool.add_async(lines)
            self._added += len(lines)
            self.state.events.mark_stored(e.id for e in events)

    async def _write(self, batch: Batch, direct: list[str] | None = None) -> None:
        """Write a batch; split on 413, isolate bad lines on 400/422; raise anything else.

        `direct`: the lines are not spooled (the spool is down), so nothing is acked, and a
        line InfluxDB rejects is put in `direct` rather than dead-lettered.
        """
        try:
            await self.store.write_lines(batch.lines)
        except StoreError as exc:
            if exc.status == 413 and len(batch) > 1:
                first, rest = batch.split(len(batch) // 2)
                await self._write(first, direct)
                await self._write(rest, direct)
                return
            if exc.status in (400, 422) and not isinstance(exc, StoreAuthError):
                # Good lines in a partial write are stored; rewriting them is idempotent.
                if len(batch) == 1 and direct is not None:
                    log.error(
                        "influxdb rejected a point; it is dead-lettered once the spool is back",
                        error=str(exc),
                    )
                    direct += batch.lines
                    return
                if len(batch) == 1:
                    log.error(
                        "influxdb rejected a point; moved to the dead-letter file",
                        error=str(exc),
                        file=str(self.spool.dead_letter_path),
                    )
                    self.spool.dead_letter(batch, str(exc))
                    if batch.lines[0].startswith(FOLLOWERS + ","):
                        self.dead_lettered += 1
                        self._dead_reason = str(exc)
                    return
                first, rest = batch.split(len(batch) // 2)
                await self._write(first, direct)
                await self._write(rest, direct)
                return
            raise
        if direct is None:
            self.spool.ack(batch)

    def _ledger(self) -> dict[str, int]:
        c = self.counts()
        return {
            "added": c.added,
            "written": c.written,
            "dropped": c.dropped,
            "dead_lettered": c.dead_lettered,
            "dropped_disk_full": c.dropped_disk_full,
            "spooled": c.spooled,
        }

    async def run(self, stop: asyncio.Event, every: float = 1.0) -> None:
        """Drain the spool in the background (so a backlog empties between polls)."""
        while not stop.is_set():
            try:
                # Not forced: while polls stream lines in, a forced drain would chase them in
                # many small writes; full batches go at once, a partial one within LINGER.
                if await self._drain(force=False):
                    self._drain_soon()
            except Exception:  # the loop must outlive any one failure
                log.exception("writer loop error")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=every)


def _bytes(lines: Sequence[str]) -> int:
    return sum(map(len, lines)) + len(lines)


def _full(batch: Batch) -> bool:
    """Big enough to write without waiting for more lines."""
    # size counts a newline after each line; the bound is on the lines alone.
    return len(batch) >= BATCH_LINES or batch.size - len(batch) >= BATCH_BYTES // 2
