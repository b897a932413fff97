"""A full disk: which errors mean it, and the bounded memory that holds readings meanwhile."""

from __future__ import annotations

import errno
import sqlite3

import structlog

# The logger keeps its name from before the move, so existing log filters still match.
log = structlog.get_logger("followerwatch.diskfull")

# SQLite's primary result codes for "the disk took no more" (the low byte of extended codes).
_SQLITE_IOERR = 10
_SQLITE_FULL = 13


def out_of_space(exc: BaseException) -> bool:
    """Whether an error means the data folder's disk cannot take a write now (full, I/O error)."""
    if isinstance(exc, sqlite3.OperationalError):
        code = getattr(exc, "sqlite_errorcode", None)
        if code is not None:
            return code & 0xFF in (_SQLITE_FULL, _SQLITE_IOERR)
        return "disk is full" in str(exc) or "disk I/O error" in str(exc)
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


class MemoryBuffer:
    """How many readings wait in memory for the disk, at most `limit`; what was dropped past it.

    Shared by the pipeline (batches whose rule work is not committed) and the writer (lines not
    yet in the spool), so the bound holds for both together.
    """

    def __init__(self, limit: int = 100_000) -> None:
        self.limit = limit
        self.held = 0  # readings in memory now
        self.dropped = 0  # readings dropped since start, because the bound was reached
        self._dropping = False  # this episode's drop has been logged

    def take(self, readings: int) -> bool:
        """Reserve room for these readings; False (and counted as dropped) past the bound."""
        if self.held + readings <= self.limit:
            self.held += readings
            return True
        self.drop(readings)
        return False

    def drop(self, readings: int) -> None:
        """Count readings dropped because memory holds all it may (logged once an episode)."""
        self.dropped += readings
        if not self._dropping:
            self._dropping = True
            log.error(
                "disk full and memory buffer full: new readings are dropped and counted",
                memory_buffer=self.limit,
                held=self.held,
            )

    def release(self, readings: int) -> None:
        """These readings reached the disk (or were given up)."""
        self.held = max(0, self.held - readings)
        if self.held == 0:
            self._dropping = False
