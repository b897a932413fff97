"""The spool's front: lines a full disk will not take wait in memory, bounded, oldest first."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Callable

import structlog

from followerwatch.disk.full import MemoryBuffer, out_of_space
from followerwatch.store.spool import Spool, SpoolCounts

log = structlog.get_logger("followerwatch.writer")


class HeldLines:
    """Adds lines to the spool, or holds them (within the MemoryBuffer) while the disk is full.

    Lines past the bound are dropped and counted; the ledger records them (as added and as
    `dropped_disk_full`) once the disk takes a write again, and `counts` shows them meanwhile.
    """

    def __init__(self, spool: Spool, buffer: MemoryBuffer) -> None:
        self.spool = spool
        self.buffer = buffer
        self._lines: list[tuple[list[str], int]] = []  # (lines, their readings), oldest first
        self._dropped = 0  # points dropped that the ledger on disk does not count yet
        self.problem: str | None = None  # "disk full: ..." while lines wait

    def counts(self) -> SpoolCounts:
        """The spool's ledger, with the drops the full disk has kept it from recording yet."""
        counts = self.spool.counts()
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
        if self._lines:  # older lines wait in memory: these go behind them
            self._hold(lines, readings)
            return None
        try:
            # Committed (fsynced) by the spool's committer thread, grouped with other adds.
            dropped = await self.spool.add_async(lines)
        except (sqlite3.Error, OSError) as exc:
            self.failed(exc)
            self._hold(lines, readings)
            return None
        self.recovered()
        return dropped

    def failed(self, exc: BaseException) -> None:
        """A write the disk refused (re-raised unless the disk is full)."""
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

    def _hold(self, lines: list[str], readings: int) -> None:
        # Writes without readings (events, health) are bounded in number as well.
        if len(self._lines) >= max(1, self.buffer.limit):
            self.buffer.drop(readings)
        elif self.buffer.take(readings):
            self._lines.append((lines, readings))
            return
        self._dropped += len(lines)

    async def respool(self, ledger: Callable[[], dict[str, int]]) -> bool:
        """Move what memory holds into the spool, oldest first; whether none is left."""
        if not self._lines and not self._dropped:
            return True
        # Taken off first: an add meanwhile goes to the spool's committer behind this one.
        held, self._lines = self._lines, []
        try:
            if held:
                await self.spool.add_async([line for lines, _ in held for line in lines])
        except (sqlite3.Error, OSError) as exc:
            self._lines = held + self._lines
            self.failed(exc)
            return False
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
        if self.problem is not None and not self._lines and not self._dropped:
            log.warning("disk has space again: the spool takes writes", file=str(self.spool.path))
            self.problem = None

    def lost(self) -> int:
        """At exit: the readings still held (logged with the points), which are lost."""
        readings = sum(n for _, n in self._lines)
        if self._lines or self._dropped:
            log.error(
                "disk still full at shutdown: points held in memory are lost",
                readings=readings,
                lines=sum(len(lines) for lines, _ in self._lines),
                dropped_unrecorded=self._dropped,
            )
        return readings
