"""One way to open the service's local SQLite files: WAL, fully synced, autocommit."""

from __future__ import annotations

import sqlite3
from pathlib import Path

BUSY_TIMEOUT = 10.0  # seconds


def open_db(path: Path, schema: str) -> sqlite3.Connection:
    """Open (creating) a database that survives power loss, and apply its schema."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # A file may have a second connection (a committer thread): BEGIN IMMEDIATE waits for the
    # other's transaction (the busy timeout) instead of failing with "database is locked".
    db = sqlite3.connect(
        str(path), isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT
    )
    db.execute("PRAGMA journal_mode=WAL")
    # FULL: a committed spool line or event is on disk before we go on.
    db.execute("PRAGMA synchronous=FULL")
    db.executescript(schema)
    return db
