"""What the writer and the service use of a spool, whichever backend holds it."""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike
from typing import Protocol

from followerwatch.store.spool import SpoolCounts
from followerwatch.store.spoolbatch import Batch


class SpoolUnavailable(ConnectionError):
    """The shared spool's database cannot be reached (an OSError, as a full disk's are)."""


class SpoolStore(Protocol):
    """A durable, capped FIFO of line-protocol lines: SQLite's Spool or PostgreSQL's PgSpool.

    A shared spool raises SpoolUnavailable while its database is down; nothing is lost by it.
    Such a spool must also answer `size` from a worker thread: during an outage the writer
    asks it there, so a connection attempt never holds the event loop.
    """

    @property
    def path(self) -> str | PathLike[str]:
        """Where the lines live, for messages."""
        ...

    @property
    def dead_letter_path(self) -> str | PathLike[str]:
        """Where lines InfluxDB rejected for good go, for messages."""
        ...

    async def add_async(self, lines: Sequence[str]) -> int:
        """Append lines durably; how many of the oldest were dropped to fit the cap."""
        ...

    def add_dropped(self, points: int) -> None:
        """Record points dropped before the spool (memory buffer full) in the ledger."""
        ...

    def take(self, max_lines: int, max_bytes: int = ...) -> Batch:
        """The oldest lines (this writer may send), as a batch."""
        ...

    def ack(self, done: Batch | Sequence[int]) -> None:
        """These lines are in InfluxDB: remove them."""
        ...

    def dead_letter(self, rejected: Batch | Sequence[tuple[int, str]], reason: str) -> None:
        """InfluxDB will never take these lines: set them aside, with why."""
        ...

    def size(self) -> int:
        """Lines waiting."""
        ...

    def newest_with_prefix(self, lines: int, prefix: str) -> int:
        """How many of the newest `lines` lines start with `prefix`."""
        ...

    def counts(self) -> SpoolCounts:
        """The ledger."""
        ...

    def close(self) -> None:
        """Release the spool's connections (and threads)."""
        ...
