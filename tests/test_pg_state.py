"""PostgreSQL rule state and last counts (state/pg/): the mirror polls read, and the committer
that writes behind it in order, fenced by the shards' leases, through outages."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from followerwatch.demo.postgres import TempPostgres
from followerwatch.models import Event
from followerwatch.state.pg.committer import PgCommitter, Routes
from followerwatch.state.pg.connect import connect, migrate
from followerwatch.state.pg.mirror import ShardMirror
from followerwatch.state.pg.store import PgState
from followerwatch.state.values import SUMMARY_RULE, Change, HeldZero, LastSeen
from followerwatch.state.writes import Commit
from pg_fixture import fresh_database
from test_state_seam import event

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
# A packed summary is latin-1 text with NULs in it (rules/unusual_state.py).
PACKED = "\x01\x00\x00\xff summary \xe9\x00"
A, B = 3, 7  # the two virtual shards the tests' accounts fall in


def shard_of(key: tuple[str, str]) -> int:
    return B if key[1].startswith("b") else A


def no_route(_: Event) -> list[str]:
    return ["log"]


def prepare(dsn: str) -> None:
    with connect(dsn) as conn:
        migrate(conn)


def lease(dsn: str, shard: int, holder: str, fence: int, ttl: float = 60.0) -> None:
    """Hand `shard` to `holder` with `fence` (what the lease manager's claim does)."""
    with connect(dsn) as conn:
        conn.execute(
            "INSERT INTO leases (shard, holder, fence, expires)"
            " VALUES (%s, %s, %s, now() + make_interval(secs => %s))"
            " ON CONFLICT (shard) DO UPDATE SET holder = excluded.holder,"
            " fence = excluded.fence, expires = excluded.expires",
            (shard, holder, fence, ttl),
        )
        conn.commit()


def query(dsn: str, sql: str, *args: object) -> list[tuple[Any, ...]]:
    with connect(dsn) as conn:
        return conn.execute(sql, args).fetchall()


def count(account: str, n: int, minute: int, handle: str | None = None) -> Change:
    seen = LastSeen(n, T0 + timedelta(minutes=minute), None, handle)
    return Change("x", account, seen, {}, (), journal=True)


def full_state() -> tuple[list[Change], list[HeldZero], list[tuple[str, str]]]:
    """A commit with a bit of everything, over two shards."""
    a1 = Change(
        "x",
        "a1",
        LastSeen(999, T0, "id-a1", "@a1"),
        {"below:1000": "firing", SUMMARY_RULE: PACKED},
        (event("a1", 1),),
        history=((T0 - timedelta(minutes=1), 1001), (T0, 999)),
    )
    b1 = Change("x", "b1", None, {SUMMARY_RULE: PACKED + "b"}, ())  # seeded, no count yet
    b2 = Change("x", "b2", LastSeen(5, T0, None, None), {"stale": "ok"}, (), journal=True)
    held = [HeldZero("x", "a2", T0, 10, 3, "id-a2", "@a2", 60)]
    return [a1, b1, b2], held, []


def snapshot(m: ShardMirror) -> dict[str, Any]:
    keys = [("x", a) for a in ("a1", "a2", "b1", "b2")]
    summaries: dict[tuple[str, str], str] = {}
    return {
        "last": m.last_seen_many(keys, summaries),
        "summaries": summaries,
        "states": m.rule_states_many(keys),
        "states_with": m.rule_states_many(keys, summaries),
        "history": m.history_many(keys, T0 - timedelta(hours=1)),
        "held": m.held_zeros(),
        "active": sorted(m.active()),
    }


@pytest.fixture
def dsn(pg_dsn: str) -> str:
    prepare(pg_dsn)
    return pg_dsn


async def test_a_commit_round_trips_into_the_successors_mirror(dsn: str) -> None:
    for shard in (A, B):
        lease(dsn, shard, "r1", 1)
    fences = {A: 1, B: 1}
    r1 = PgState(dsn, "r1", shard_of=shard_of, fence_of=fences.get)
    changes, held, _ = full_state()
    await r1.committer.commit_async(changes, no_route, {("x", "a1"): 3600.0}, held=held)
    before = snapshot(r1.mirror)
    assert before["last"][("x", "a1")] == LastSeen(999, T0, "id-a1", "@a1")
    assert before["states"][("x", "b1")] == {SUMMARY_RULE: PACKED + "b"}
    assert before["states"][("x", "a1")][SUMMARY_RULE] == PACKED
    assert [a.event_id for a in before["active"]] == ["a1-1"]
    assert r1.committer.flush(10)
    r1.close()
    assert r1.committer.landed == 2 and r1.committer.fenced_drops == 0

    for shard in (A, B):
        lease(dsn, shard, "r2", 2)
    r2 = PgState(dsn, "r2", shard_of=shard_of, fence_of={A: 2, B: 2}.get)
    assert snapshot(r2.mirror)["last"] == {}  # nothing until a shard is loaded
    r2.load(A)
    r2.load(B)
    assert snapshot(r2.mirror) == before
    # A repeat announced by the successor lands in its row.
    r2.committer.touch_active(event("a1", 1), 1234.5)
    assert [a.last_sent for a in r2.mirror.active()] == [1234.5]
    assert r2.committer.flush(10)
    assert query(dsn, "SELECT event_id, last_sent FROM active") == [("a1-1", 1234.5)]
    r2.drop(A)
    assert set(r2.mirror.last_seen_many([("x", "a1"), ("x", "b2")])) == {("x", "b2")}
    assert r2.mirror.active() == []
    r2.close()


async def test_a_stale_fence_is_refused_and_the_successors_rows_stay(dsn: str) -> None:
    lease(dsn, A, "r1", 1)
    r1 = PgState(dsn, "r1", shard_of=shard_of, fence_of={A: 1}.get)
    await r1.committer.commit_async([count("a1", 100, 0, "@old")], no_route)
    assert r1.committer.flush(10)

    lease(dsn, A, "r2", 2)  # r1 paused past its TTL: r2 took the shard
    r2 = PgState(dsn, "r2", shard_of=shard_of, fence_of={A: 2}.get)
    r2.load(A)
    assert r2.accounts.last_seen("x", "a1") == LastSeen(100, T0, None, "@old")
    await r2.committer.commit_async([count("a1", 200, 1, "@new")], no_route)
    assert r2.committer.flush(10)

    # r1 wakes up and commits under its old fence: refused, counted, r2's row untouched.
    await r1.committer.commit_async([count("a1", 999, 2, "@stale")], no_route)
    assert r1.committer.flush(10)
    assert r1.committer.fenced_drops == 1
    assert r1.committer.take_refused() == {A}  # for the lease manager to drop the shard
    assert r1.committer.take_refused() == set()
    rows = query(dsn, "SELECT followers, handle FROM accounts WHERE account = 'a1'")
    assert rows == [(200, "@new")]
    # A lease renewed under the same fence but past its expiry refuses too.
    with connect(dsn) as conn:
        conn.execute("UPDATE leases SET expires = now() - interval '1 s' WHERE shard = %s", (A,))
        conn.commit()
    await r2.committer.commit_async([count("a1", 300, 3)], no_route)
    assert r2.committer.flush(10)
    assert r2.committer.fenced_drops == 1
    assert query(dsn, "SELECT followers FROM accounts WHERE account = 'a1'") == [(200,)]
    r1.close()
    r2.close()


async def test_commits_land_in_order_with_their_events_in_the_same_transaction(dsn: str) -> None:
    lease(dsn, A, "r1", 1)
    written: list[str] = []

    def write_events(cur: psycopg.Cursor[Any], shard: int, routes: Routes) -> None:
        for ev, _ in routes:
            if ev.id == "a1-poison":
                # The outbox's insert failing: the rule state of that commit must not land.
                cur.execute("SELECT 1/0")
            written.append(ev.id)

    committer = PgCommitter(
        dsn, "r1", ShardMirror(), shard_of=shard_of, fence_of={A: 1}.get, write_events=write_events
    )
    # The lease row locked (as a claim would): the writer's fence check waits, commits queue.
    with connect(dsn) as blocker:
        blocker.execute("SELECT 1 FROM leases WHERE shard = %s FOR UPDATE", (A,))
        for n in range(1, 201):
            ch = count("a1", n, n)._replace(
                rule_states={"below:1000": f"s{n}"}, events=(event("a1", n),)
            )
            await committer.commit_async([ch], no_route)
        assert committer.pending == 200
    assert committer.flush(20)
    assert written == [f"a1-{n}" for n in range(1, 201)]
    assert committer.commits <= 3  # many commits per transaction
    assert query(dsn, "SELECT followers FROM accounts") == [(200,)]
    assert query(dsn, "SELECT state FROM rule_state") == [(b"s200",)]

    poison = dataclasses.replace(event("a1", 0), id="a1-poison")
    await committer.commit_async(
        [count("a1", 201, 201)._replace(rule_states={"below:1000": "bad"}, events=(poison,))],
        no_route,
    )
    await committer.commit_async([count("a1", 202, 202)], no_route)
    assert committer.flush(10)
    assert committer.rejected == 1
    # The refused commit left nothing; the one after it landed.
    assert query(dsn, "SELECT followers FROM accounts") == [(202,)]
    assert query(dsn, "SELECT state FROM rule_state") == [(b"s200",)]
    committer.close()


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[TempPostgres]:
    """A server of this module's own, to stop and start (never the session's)."""
    with TempPostgres() as server:
        yield server


def wait_for(what: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


async def test_an_outage_queues_commits_and_they_land_in_order_after(
    own_postgres: TempPostgres,
) -> None:
    dsn = fresh_database(own_postgres)
    prepare(dsn)
    lease(dsn, A, "r1", 1)
    written: list[str] = []

    def write_events(cur: psycopg.Cursor[Any], shard: int, routes: Routes) -> None:
        written.extend(ev.id for ev, _ in routes)

    mirror = ShardMirror()
    committer = PgCommitter(
        dsn,
        "r1",
        mirror,
        shard_of=shard_of,
        fence_of={A: 1}.get,
        write_events=write_events,
        backoff=(0.02, 0.2),
    )
    await committer.commit_async([count("a1", 1, 1)._replace(events=(event("a1", 1),))], no_route)
    assert committer.flush(10)
    own_postgres.stop()
    try:
        for n in range(2, 12):
            ch = count("a1", n, n)._replace(
                rule_states={"below:1000": f"s{n}"}, events=(event("a1", n),)
            )
            await committer.commit_async([ch], no_route)
            # Polls read their own commits while PostgreSQL is away.
            assert mirror.last_seen("x", "a1") == LastSeen(n, T0 + timedelta(minutes=n), None, None)
            assert mirror.rule_states("x", "a1") == {"below:1000": f"s{n}"}
        wait_for(lambda: committer.failures >= 2)
        assert committer.pending == 10
        assert not committer.flush(0.1)
    finally:
        own_postgres.start()
    assert committer.flush(15)
    assert written == [f"a1-{n}" for n in range(1, 12)]
    assert committer.dropped == 0
    assert query(dsn, "SELECT followers FROM accounts") == [(11,)]
    assert query(dsn, "SELECT state FROM rule_state") == [(b"s11",)]
    committer.close()


async def test_past_its_bound_the_queue_drops_the_oldest_and_counts_them(
    own_postgres: TempPostgres,
) -> None:
    dsn = fresh_database(own_postgres)
    prepare(dsn)
    lease(dsn, A, "r1", 1)
    written: list[str] = []

    def write_events(cur: psycopg.Cursor[Any], shard: int, routes: Routes) -> None:
        written.extend(ev.id for ev, _ in routes)

    committer = PgCommitter(
        dsn,
        "r1",
        ShardMirror(),
        shard_of=shard_of,
        fence_of={A: 1}.get,
        write_events=write_events,
        max_pending=3,
        backoff=(0.02, 0.2),
    )
    own_postgres.stop()
    try:
        for n in range(1, 9):
            committer.submit(A, 1, Commit([count("a1", n, n)], [(event("a1", n), [])], None))
        wait_for(lambda: committer.failures >= 1 and committer.pending == 3)
        assert committer.dropped == 5
    finally:
        own_postgres.start()
    assert committer.flush(15)
    assert written == ["a1-6", "a1-7", "a1-8"]  # the newest three, in order
    assert query(dsn, "SELECT followers FROM accounts") == [(8,)]
    committer.close()


def test_reads_never_touch_postgresql() -> None:
    # No database at all: the mirror answers from memory.
    mirror = ShardMirror()
    committer = PgCommitter(
        "postgresql://nobody@127.0.0.1:1/none",
        "r1",
        mirror,
        shard_of=shard_of,
        fence_of={A: 1}.get,
        backoff=(0.02, 0.05),
    )
    committer.submit(A, 1, Commit([count("a1", 7, 0)], [], None))
    assert mirror.last_seen_many([("x", "a1")]) == {("x", "a1"): LastSeen(7, T0, None, None)}
    wait_for(lambda: committer.failures >= 1)
    assert committer.pending == 1
    committer.close(timeout=0.1)
