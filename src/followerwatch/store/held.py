"""The spool's front: lines the spool will not take now (a full disk, a shared spool's database
down) wait in memory, bounded, oldest first."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Callable

import structlog

from followerwatch.disk.full import MemoryBuffer, out_of_space
from followerwatch.store.spool import SpoolCounts
from followerwatch.store.spool_base import SpoolStore, SpoolUnavailable

log = structlog.get_logger("followerwatch.writer")


class HeldLines:
    """Adds lines to the spool, or holds them (within the MemoryBuffer) while it cannot.

    Lines past the bound are dropped and counted; the ledger records them (as added and as
    `dropped_disk_full`) once the spool takes a write again, and `counts` shows them meanwhile.
    While a shared spool is unavailable (`outage`), nothing is added to it until a retry finds
    it back; the writer sends what is held straight to InfluxDB meanwhile (`head`, `sent`).
    """

    def __init__(self, spool: SpoolStore, buffer: MemoryBuffer) -> None:
        self.spool = spool
        self.buffer = buffer
        self._lines: list[tuple[list[str], int]] = []  # (lines, their readings), oldest first
        self._dropped = 0  # points dropped that the ledger on disk does not count yet
        self.problem: str | None = None  # "disk full: ..." while lines wait
        self.outage: str | None = None  # "spool unavailable: ..." while its database is down
        self._known = SpoolCounts(0, 0, 0, 0, 0)  # the ledger as last read
        # Lines InfluxDB rejected for good while the spool was away: spooled once it is back,
        # so its dead-letter store records them (they are rejected again on the way).
        self._rejected: list[str] = []

    def counts(self) -> SpoolCounts:
        """The spool's ledger, with the drops it has not recorded yet (as last read while the
        spool is unavailable)."""
        if self.outage is None:
            try:
                self._known = self.spool.counts()
            except SpoolUnavailable as exc:
                self.unavailable(exc)
        counts = self._known
        if not self._dropped:
            return counts
        return dataclasses.replace(
            counts,
            added=counts.added + self._dropped,
            dropped_disk_full=counts.dropped_disk_full + self._dropped,
        )

    def drop(self, points: int) -> None:
        """Count points that cannot be kept (disk and memory buffer full) as dropped."""
        self._dropped += points

    async def add(self, lines: list[str], readings: int) -> int | None:
        """Add lines to the spool: the oldest it dropped at its cap, or None when held."""
        if self._lines or self.outage is not None:
            # Older lines wait in memory (these go behind them), or the spool's database is
            # down (the writer's next pass tries it, not every write).
            self._hold(lines, readings)
            return None
        try:
            # Committed (fsynced) by the spool's committer thread, grouped with other adds.
            dropped = await self.spool.add_async(lines)
        except SpoolUnavailable as exc:
            self.unavailable(exc)
            self._hold(lines, readings)
            return None
        except (sqlite3.Error, OSError) as exc:
            self.failed(exc)
            self._hold(lines, readings)
            return None
        self.recovered()
        return dropped

    def failed(self, exc: BaseException) -> None:
        """A write the spool refused (re-raised unless the disk is full or the spool is away)."""
        if isinstance(exc, SpoolUnavailable):
            self.unavailable(exc)
            return
        if not out_of_space(exc):
            raise exc
        if self.problem is None:
            log.error(
                "disk full: cannot add to the spool; holding points in memory",
                file=str(self.spool.path),
                error=str(exc),
                memory_buffer=self.buffer.limit,
            )
        self.problem = f"disk full: {exc}"

    def unavailable(self, exc: SpoolUnavailable) -> None:
        """The spool's database is down: logged once per outage."""
        if self.outage is None:
            log.error(
                "spool unavailable: holding points in memory and writing them straight to "
                "InfluxDB; retrying the spool every pass",
                spool=str(self.spool.path),
                error=str(exc),
                memory_buffer=self.buffer.limit,
            )
        self.outage = f"spool unavailable: {exc}"

    def reachable(self) -> None:
        """A spool operation went through: an outage is over."""
        if self.outage is not None:
            log.warning(
                "spool reachable again: points held in memory go to it",
                spool=str(self.spool.path),
                held_lines=self.waiting()[0],
            )
            self.outage = None

    def _hold(self, lines: list[str], readings: int) -> None:
        # Writes without readings (events, health) are bounded in number as well.
        if len(self._lines) >= max(1, self.buffer.limit):
            self.buffer.drop(readings)
        elif self.buffer.take(readings):
            self._lines.append((lines, readings))
            return
        self._dropped += len(lines)

    def waiting(self) -> tuple[int, int]:
        """(lines, readings) held in memory."""
        return sum(len(lines) for lines, _ in self._lines), sum(n for _, n in self._lines)

    def head(self, max_lines: int) -> list[str]:
        """The oldest held lines, whole writes of them up to `max_lines` (at least one write)."""
        out: list[str] = []
        for lines, _ in self._lines:
            if out and len(out) + len(lines) > max_lines:
                break
            out += lines
        return out

    def reject(self, lines: list[str]) -> None:
        """Lines InfluxDB rejected for good while the spool is away: spooled when it is back."""
        self._rejected += lines

    def sent(self, lines: int) -> None:
        """The oldest `lines` held lines (as `head` gave them) are in InfluxDB: forget them."""
        while lines > 0 and self._lines:
            first, readings = self._lines.pop(0)
            lines -= len(first)
            self.buffer.release(readings)

    async def respool(self, ledger: Callable[[], dict[str, int]]) -> bool:
        """Move what memory holds into the spool, oldest first; whether none is left."""
        if not self._lines and not self._dropped and not self._rejected:
            return True
        # Taken off first: an add meanwhile goes to the spool's committer behind this one.
        held, self._lines = self._lines, []
        rejected, self._rejected = self._rejected, []
        try:
            if held or rejected:
                await self.spool.add_async(rejected + [line for lines, _ in held for line in lines])
        except (sqlite3.Error, OSError) as exc:
            self._lines = held + self._lines
            self._rejected = rejected + self._rejected
            self.failed(exc)
            return False
        if held or rejected:
            self.reachable()
        self.buffer.release(sum(n for _, n in held))
        try:
            self.spool.add_dropped(self._dropped)
        except (sqlite3.Error, OSError) as exc:
            self.failed(exc)
            return False
        self._dropped = 0
        if self.problem is not None and not self._lines:
            log.warning(
                "disk has space again: points held in memory are spooled",
                lines=sum(len(lines) for lines, _ in held),
                dropped_readings=self.buffer.dropped,
                **ledger(),
            )
            self.problem = None
        return not self._lines

    def recovered(self) -> None:
        """A write went through: with nothing held in memory, the disk problem is over."""
        self.reachable()
        if self.problem is not None and not self._lines and not self._dropped:
            log.warning("disk has space again: the spool takes writes", file=str(self.spool.path))
            self.problem = None

    def lost(self) -> int:
        """At exit: the readings still held (logged with the points), which are lost."""
        lines, readings = self.waiting()
        if self._lines or self._dropped or self._rejected:
            log.error(
                "spool still unavailable at shutdown: points held in memory are lost"
                if self.outage is not None
                else "disk still full at shutdown: points held in memory are lost",
                readings=readings,
                lines=lines,
                dropped_unrecorded=self._dropped,
                rejected_not_dead_lettered=len(self._rejected),
            )
        return readings
