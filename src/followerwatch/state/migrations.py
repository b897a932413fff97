"""Every schema change of both state backends, in one place.

SQLite (state.sqlite3, one process) creates its tables idempotently and adds columns on open
(state/schema.py applies them). PostgreSQL (shared by replicas) applies `POSTGRES` in order,
each step once, recorded in `fw_schema`, under an advisory lock so replicas starting together
migrate once.
"""

from __future__ import annotations

from dataclasses import dataclass

SQLITE_SCHEMA = """
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

# Columns added to SQLite tables after their first release: (table, column, definition, then).
# `then` runs once, right after the column is added.
SQLITE_COLUMNS: tuple[tuple[str, str, str, tuple[str, ...]], ...] = (
    (
        "events",
        "enriched",
        "INTEGER NOT NULL DEFAULT 0",
        # Events stored before the upgrade may have been attempted already: their text is final.
        (
            "UPDATE events SET enriched = 1",
            "CREATE INDEX IF NOT EXISTS events_unenriched ON events (seq) WHERE enriched = 0",
        ),
    ),
    ("events", "projection", "TEXT", ()),
    # The `unusual` rule's score; NULL for every other event, and for those stored before.
    ("events", "score", "REAL", ()),
    # The unusual rule's summary (state/values.py SUMMARY_RULE); older ones stay in rule_state,
    # which reads fall back to while it is NULL.
    ("accounts", "summary", "TEXT", ()),
)


@dataclass(frozen=True)
class Step:
    """One PostgreSQL migration: applied once, in order, in one transaction."""

    version: int
    name: str
    sql: str


# The number of virtual shards is fixed when the lease table is made (see state/pg/leases.py).
POSTGRES: tuple[Step, ...] = (
    Step(
        1,
        "replicas and leases",
        """
CREATE TABLE replicas (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, started TIMESTAMPTZ NOT NULL DEFAULT now(),
    seen TIMESTAMPTZ NOT NULL DEFAULT now(), expires TIMESTAMPTZ NOT NULL);
CREATE TABLE leases (
    shard INTEGER PRIMARY KEY, holder TEXT, fence BIGINT NOT NULL DEFAULT 0,
    expires TIMESTAMPTZ NOT NULL DEFAULT '-infinity');
""",
    ),
    # Rule state and last counts (state/pg/mirror.py, committer.py): SQLite's tables, each row
    # with its account's virtual shard, which a replica loads when it takes the shard's lease.
    # States and summaries are BYTEA (UTF-8): a packed summary holds NUL, which TEXT refuses.
    Step(
        2,
        "rule state and last counts",
        """
CREATE TABLE accounts (
    platform TEXT NOT NULL, account TEXT NOT NULL, shard INTEGER NOT NULL,
    followers BIGINT NOT NULL, time TIMESTAMPTZ NOT NULL, platform_id TEXT, handle TEXT,
    summary BYTEA, PRIMARY KEY (platform, account));
CREATE INDEX accounts_shard ON accounts (shard);
CREATE TABLE rule_state (
    platform TEXT NOT NULL, account TEXT NOT NULL, shard INTEGER NOT NULL, rule TEXT NOT NULL,
    state BYTEA NOT NULL, PRIMARY KEY (platform, account, rule));
CREATE INDEX rule_state_shard ON rule_state (shard);
CREATE TABLE history (
    platform TEXT NOT NULL, account TEXT NOT NULL, shard INTEGER NOT NULL,
    time DOUBLE PRECISION NOT NULL, followers BIGINT NOT NULL,
    PRIMARY KEY (platform, account, time));
CREATE INDEX history_shard ON history (shard);
CREATE TABLE active (
    platform TEXT NOT NULL, account TEXT NOT NULL, shard INTEGER NOT NULL, rule TEXT NOT NULL,
    event_id TEXT NOT NULL, last_sent DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (platform, account, rule));
CREATE INDEX active_shard ON active (shard);
CREATE TABLE suspect_zeros (
    platform TEXT NOT NULL, account TEXT NOT NULL, shard INTEGER NOT NULL,
    time TIMESTAMPTZ NOT NULL, following BIGINT, posts BIGINT, platform_id TEXT, handle TEXT,
    resolution BIGINT, PRIMARY KEY (platform, account, time));
CREATE INDEX suspect_zeros_shard ON suspect_zeros (shard);
""",
    ),
    # The outbox (state/pg/events.py, deliveries.py) and the spool (store/pg_spool.py). A
    # delivery is claimed by one replica until `claim_until`; a spooled line likewise while it
    # is being written.
    Step(
        3,
        "outbox and spool",
        """
CREATE TABLE events (
    seq BIGSERIAL PRIMARY KEY, id TEXT NOT NULL UNIQUE, time TEXT NOT NULL,
    platform TEXT NOT NULL, account TEXT NOT NULL, rule TEXT NOT NULL, kind TEXT NOT NULL,
    value BIGINT NOT NULL, threshold BIGINT NOT NULL, message TEXT NOT NULL,
    severity TEXT NOT NULL, status TEXT NOT NULL, labels TEXT NOT NULL, score DOUBLE PRECISION,
    stored BOOLEAN NOT NULL DEFAULT false, enriched BOOLEAN NOT NULL DEFAULT false,
    projection TEXT, shard INTEGER NOT NULL);
CREATE INDEX events_unstored ON events (seq) WHERE NOT stored;
CREATE INDEX events_unenriched ON events (seq) WHERE NOT enriched;
CREATE TABLE deliveries (
    event_id TEXT NOT NULL REFERENCES events (id), notifier TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt DOUBLE PRECISION NOT NULL DEFAULT 0, last_error TEXT,
    claimed_by TEXT, claim_until TIMESTAMPTZ, PRIMARY KEY (event_id, notifier));
CREATE INDEX deliveries_pending ON deliveries (notifier, event_id) WHERE status = 'pending';
CREATE TABLE spool (
    seq BIGSERIAL PRIMARY KEY, line TEXT NOT NULL, claimed_by TEXT, claim_until TIMESTAMPTZ);
CREATE TABLE spool_counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL);
INSERT INTO spool_counters VALUES ('added', 0), ('written', 0), ('dropped', 0),
    ('dead_lettered', 0), ('dropped_disk_full', 0);
CREATE TABLE spool_dead_letter (
    seq BIGINT NOT NULL, time TIMESTAMPTZ NOT NULL DEFAULT now(), reason TEXT NOT NULL,
    line TEXT NOT NULL);
""",
    ),
)

# Serialises migrations across replicas starting at once (an arbitrary, fixed 64-bit key).
ADVISORY_LOCK = 0x66774D4947  # "fwMIG"
