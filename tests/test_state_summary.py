"""A summary (the unusual rule's state) is kept in its account's row, written with the count.

Every poll rewrites it, so it rides in the one row write the count makes instead of a second
row in rule_state; these tests check it reads back the newest wherever it was written from,
across restarts and from files written before the column existed.
"""

from __future__ import annotations

import contextlib
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from followerwatch.analysis.unusual import stored_states
from followerwatch.poll.known import Known
from followerwatch.state.commit import Change, LastSeen
from followerwatch.state.db import StateDB
from followerwatch.state.values import SUMMARY_RULE

T0 = datetime(2026, 9, 1, tzinfo=UTC)
KEY = ("x", "hot")


def seen(minute: int, count: int = 1000) -> LastSeen:
    return LastSeen(count, T0 + timedelta(minutes=minute), None, None)


def raw(path: Path, query: str) -> list[tuple[object, ...]]:
    with contextlib.closing(sqlite3.connect(str(path))) as db:
        return db.execute(query).fetchall()


def no_route(_: object) -> list[str]:
    return []


async def test_summaries_ride_with_the_count_journaled_or_behind(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    state = StateDB(path)
    try:
        # The first count is journaled with its poll, its summary and another rule's state.
        first = Change(*KEY, seen(0), {SUMMARY_RULE: "s1", "below:5": "armed"}, (), journal=True)
        await state.committer.commit_async([first], no_route)
        # As its latin-1 bytes (a BLOB: SQLite copies it, no UTF-8 conversion either way).
        assert raw(path, "SELECT summary FROM accounts") == [(b"s1",)]
        assert raw(path, "SELECT rule FROM rule_state") == [("below:5",)]
        # A later poll that changed only the summary is written behind, and flushed with the count.
        await state.committer.commit_async(
            [Change(*KEY, seen(1), {SUMMARY_RULE: "s2"}, (), soft=True)], no_route
        )
        assert state.rules.rule_states(*KEY) == {SUMMARY_RULE: "s2", "below:5": "armed"}
        done = state.committer.flush()
        assert done is not None
        await done  # raises if the flush failed
        assert raw(path, "SELECT followers, summary FROM accounts") == [(1000, b"s2")]
        # A count without a summary (the rule off, or nothing learned) keeps the stored one.
        await state.committer.commit_async(
            [Change(*KEY, seen(2, 990), {}, (), journal=True)], no_route
        )
        assert raw(path, "SELECT followers, summary FROM accounts") == [(990, b"s2")]
    finally:
        state.close()
    again = StateDB(path)
    try:
        assert again.rules.rule_states(*KEY) == {SUMMARY_RULE: "s2", "below:5": "armed"}
        assert again.rules.rule_states_many([KEY, ("x", "none")]) == {
            KEY: {SUMMARY_RULE: "s2", "below:5": "armed"}
        }
        # A poll's batch read takes the summary from the row it reads the count from.
        known = Known(again, [KEY, ("x", "none")])
        assert known.rule_states(KEY) == {SUMMARY_RULE: "s2", "below:5": "armed"}
        assert known.last_seen(KEY) == seen(2, 990)
    finally:
        again.close()
    assert raw(path, "SELECT count(*) FROM rule_state WHERE rule='unusual'") == [(0,)]


async def test_a_summary_seeded_without_a_count_is_read_and_then_superseded(tmp_path: Path) -> None:
    state = StateDB(tmp_path / "state.sqlite3")
    try:
        # Seeded from InfluxDB before any poll: no row to ride in, so it waits in rule_state.
        await state.committer.commit_async(
            [Change(*KEY, None, {SUMMARY_RULE: "seeded"}, ())], no_route
        )
        assert state.rules.rule_states(*KEY) == {SUMMARY_RULE: "seeded"}
        first = Change(*KEY, seen(0), {SUMMARY_RULE: "polled"}, (), journal=True)
        await state.committer.commit_async([first], no_route)
        assert state.rules.rule_states(*KEY) == {SUMMARY_RULE: "polled"}
        # Seeded again (after an import): the account's row must not keep the older one.
        await state.committer.commit_async(
            [Change(*KEY, None, {SUMMARY_RULE: "reseeded"}, ())], no_route
        )
        assert state.rules.rule_states(*KEY) == {SUMMARY_RULE: "reseeded"}
        state.rules.set_rule_state(*KEY, SUMMARY_RULE, "by hand \x00\xff")
        assert state.rules.rule_states(*KEY) == {SUMMARY_RULE: "by hand \x00\xff"}
        # Text that is not latin-1 (never a packed summary) is kept as it is.
        state.rules.set_rule_state(*KEY, SUMMARY_RULE, "by hand €")
        assert state.rules.rule_states(*KEY) == {SUMMARY_RULE: "by hand €"}
    finally:
        state.close()


OLD_SCHEMA = """
CREATE TABLE accounts (
    platform TEXT NOT NULL, account TEXT NOT NULL, followers INTEGER NOT NULL,
    time TEXT NOT NULL, platform_id TEXT, handle TEXT, PRIMARY KEY (platform, account));
CREATE TABLE rule_state (
    platform TEXT NOT NULL, account TEXT NOT NULL, rule TEXT NOT NULL, state TEXT NOT NULL,
    PRIMARY KEY (platform, account, rule));
INSERT INTO accounts VALUES ('x', 'hot', 1000, '2026-09-01T00:00:00+00:00', NULL, NULL);
INSERT INTO rule_state VALUES ('x', 'hot', 'unusual', 'old summary');
INSERT INTO rule_state VALUES ('x', 'hot', 'below:5', 'armed');
"""


async def test_a_file_from_before_the_column_keeps_its_summaries(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    with contextlib.closing(sqlite3.connect(str(path))) as db:
        db.executescript(OLD_SCHEMA)
    # `check` only reads: it neither migrates the file nor fails on it.
    assert stored_states(path, [KEY]) == {KEY: {SUMMARY_RULE: "old summary", "below:5": "armed"}}
    assert "summary" not in {r[1] for r in raw(path, "PRAGMA table_info(accounts)")}
    state = StateDB(path)  # the service migrates it
    try:
        assert state.rules.rule_states(*KEY) == {SUMMARY_RULE: "old summary", "below:5": "armed"}
        assert Known(state, [KEY]).rule_states(KEY)[SUMMARY_RULE] == "old summary"
        polled = Change(*KEY, seen(5), {SUMMARY_RULE: "new summary"}, (), journal=True)
        await state.committer.commit_async([polled], no_route)
        assert state.rules.rule_states(*KEY)[SUMMARY_RULE] == "new summary"
        assert Known(state, [KEY]).rule_states(KEY)[SUMMARY_RULE] == "new summary"
    finally:
        state.close()
    assert stored_states(path, [KEY])[KEY][SUMMARY_RULE] == "new summary"
