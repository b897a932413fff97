"""The state database's tables, its migrations, and how its connections are opened."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path

from followerwatch.disk.sqlite import open_db
from followerwatch.state.migrations import SQLITE_COLUMNS, SQLITE_SCHEMA
from followerwatch.state.rows import columns

SCHEMA = SQLITE_SCHEMA  # state/migrations.py holds both backends' schemas


def open_state(path: Path, *, reset_at: datetime | None = None) -> sqlite3.Connection:
    """The loop's connection: the file checked (see `open_db`), created and migrated."""
    db = open_db(path, SCHEMA, check=True, reset_at=reset_at)
    migrate(db)
    return db


def open_committer(path: Path) -> sqlite3.Connection:
    """A second connection to an opened state file, for the committer thread."""
    return open_db(path, SCHEMA)


def migrate(db: sqlite3.Connection) -> None:
    """Add the columns (state/migrations.py SQLITE_COLUMNS) an older file's tables lack."""
    if not _missing(db):
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        # Again under the write lock: another process opening the file may have just added them.
        for table, column, definition, then in _missing(db):
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")
            for statement in then:
                db.execute(statement)
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _missing(db: sqlite3.Connection) -> list[tuple[str, str, str, tuple[str, ...]]]:
    have: dict[str, set[str]] = {}
    out = []
    for spec in SQLITE_COLUMNS:
        if spec[0] not in have:
            have[spec[0]] = columns(db, spec[0])
        if spec[1] not in have[spec[0]]:
            out.append(spec)
    return out
