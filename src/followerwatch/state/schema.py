"""The state database's tables, its migrations, and how its connections are opened."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path

from followerwatch.disk.sqlite import open_db
from followerwatch.state.rows import columns

SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    platform TEXT NOT NULL, account TEXT NOT NULL, followers INTEGER NOT NULL,
    time TEXT NOT NULL, platform_id TEXT, handle TEXT, summary TEXT,
    PRIMARY KEY (platform, account));
CREATE TABLE IF NOT EXISTS history (
    platform TEXT NOT NULL, account TEXT NOT NULL, time REAL NOT NULL, followers INTEGER NOT NULL,
    PRIMARY KEY (platform, account, time)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rule_state (
    platform TEXT NOT NULL, account TEXT NOT NULL, rule TEXT NOT NULL, state TEXT NOT NULL,
    PRIMARY KEY (platform, account, rule));
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, time TEXT NOT NULL,
    platform TEXT NOT NULL, account TEXT NOT NULL, rule TEXT NOT NULL, kind TEXT NOT NULL,
    value INTEGER NOT NULL, threshold INTEGER NOT NULL, message TEXT NOT NULL,
    severity TEXT NOT NULL, status TEXT NOT NULL, labels TEXT NOT NULL,
    stored INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS deliveries (
    event_id TEXT NOT NULL, notifier TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0, next_attempt REAL NOT NULL DEFAULT 0, last_error TEXT,
    PRIMARY KEY (event_id, notifier));
CREATE INDEX IF NOT EXISTS deliveries_pending ON deliveries (notifier, status);
CREATE TABLE IF NOT EXISTS suspect_zeros (
    platform TEXT NOT NULL, account TEXT NOT NULL, time TEXT NOT NULL, following INTEGER,
    posts INTEGER, platform_id TEXT, handle TEXT, resolution INTEGER,
    PRIMARY KEY (platform, account, time)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS active (
    platform TEXT NOT NULL, account TEXT NOT NULL, rule TEXT NOT NULL, event_id TEXT NOT NULL,
    last_sent REAL NOT NULL, PRIMARY KEY (platform, account, rule));
"""


def open_state(path: Path, *, reset_at: datetime | None = None) -> sqlite3.Connection:
    """The loop's connection: the file checked (see `open_db`), created and migrated."""
    db = open_db(path, SCHEMA, check=True, reset_at=reset_at)
    migrate_events(db)
    migrate_accounts(db)
    return db


def open_committer(path: Path) -> sqlite3.Connection:
    """A second connection to an opened state file, for the committer thread."""
    return open_db(path, SCHEMA)


def migrate_accounts(db: sqlite3.Connection) -> None:
    """Add the `summary` column (see state/values.py SUMMARY_RULE) to an older accounts table.

    Summaries stored before it stay in rule_state, which reads fall back to while it is NULL.
    """
    if "summary" in columns(db, "accounts"):
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        # Again under the write lock: another process opening the file may have just added it.
        if "summary" not in columns(db, "accounts"):
            db.execute("ALTER TABLE accounts ADD COLUMN summary TEXT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def migrate_events(db: sqlite3.Connection) -> None:
    """Add the columns an events table from an older version lacks (enrichment, score)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(events)")}
    if "enriched" in columns and "score" in columns:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        # Again under the write lock: another process opening the file may have just added them.
        columns = {row[1] for row in db.execute("PRAGMA table_info(events)")}
        if "enriched" not in columns:
            db.execute("ALTER TABLE events ADD COLUMN enriched INTEGER NOT NULL DEFAULT 0")
            db.execute("ALTER TABLE events ADD COLUMN projection TEXT")
            # Events stored before the upgrade may have been attempted already: their text is final.
            db.execute("UPDATE events SET enriched = 1")
            db.execute(
                "CREATE INDEX IF NOT EXISTS events_unenriched ON events (seq) WHERE enriched = 0"
            )
        if "score" not in columns:
            # The `unusual` rule's score; NULL for every other event, and for those stored before.
            db.execute("ALTER TABLE events ADD COLUMN score REAL")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
