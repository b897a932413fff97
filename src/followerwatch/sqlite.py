"""One way to open the service's local SQLite files: WAL, fully synced, autocommit."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def open_db(path: Path, schema: str) -> sqlite3.Connection:
    """Open (creating) a database that survives power loss, and apply its schema."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    # FULL: a committed spool line or event is on disk before we go on.
    db.execute("PRAGMA synchronous=FULL")
    db.executescript(schema)
    return db
