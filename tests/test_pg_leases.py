"""Shard leases on a real PostgreSQL (state/pg/leases.py): fair spread, expiry, fencing, outages."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence

import psycopg
import pytest

from followerwatch.demo.postgres import TempPostgres
from followerwatch.state.pg.connect import connect, migrate
from followerwatch.state.pg.leases import (
    RENEW_FRACTION,
    Fenced,
    Held,
    LeaseTable,
    check_fence,
    default_ttl,
    fair_share,
    renew_every,
)

TTL = 1.5
SHARDS = 64


def migrated(dsn: str) -> str:
    with connect(dsn) as conn:
        migrate(conn)
    return dsn


@pytest.fixture
def dsn(pg_dsn: str) -> str:
    return migrated(pg_dsn)


@pytest.fixture
def tables() -> Iterator[list[LeaseTable]]:
    made: list[LeaseTable] = []
    yield made
    for table in made:
        table.close()


def replica(made: list[LeaseTable], dsn: str, rid: str, ttl: float = TTL) -> LeaseTable:
    table = LeaseTable(dsn, rid, f"pod-{rid}", shards=SHARDS, ttl=ttl)
    made.append(table)
    return table


def database_view(dsn: str) -> dict[int, tuple[str | None, int, bool]]:
    """shard -> (holder, fence, unexpired), straight from the table."""
    with connect(dsn) as conn:
        rows = conn.execute("SELECT shard, holder, fence, expires > now() FROM leases").fetchall()
    return {int(s): (None if h is None else str(h), int(f), bool(live)) for s, h, f, live in rows}


def assert_disjoint(dsn: str, replicas: Sequence[LeaseTable]) -> None:
    """No shard in two replicas' views, and each view is what the database says it holds."""
    db = database_view(dsn)
    seen: dict[int, str] = {}
    for table in replicas:
        for shard, fence in table.held().items():
            assert shard not in seen, f"shard {shard} held by {seen[shard]} and {table.replica_id}"
            seen[shard] = table.replica_id
            assert db[shard] == (table.replica_id, fence, True)


def rounds(dsn: str, replicas: Sequence[LeaseTable], count: int) -> list[Held]:
    last: list[Held] = []
    for _ in range(count):
        last = []
        for table in replicas:
            held = table.tick()
            assert held.ok, held.error
            last.append(held)
            assert_disjoint(dsn, replicas)
    return last


def test_cadence() -> None:
    assert pytest.approx(1 / 3) == RENEW_FRACTION
    assert default_ttl(1) == 30.0
    assert default_ttl(60) == 180.0
    assert renew_every(30.0) == pytest.approx(10.0)
    assert [fair_share(64, ["a", "b", "c"], me) for me in "abc"] == [22, 21, 21]
    assert fair_share(64, ["a"], "z") == 0


def test_one_replica_takes_every_shard(dsn: str, tables: list[LeaseTable]) -> None:
    a = replica(tables, dsn, "a")
    held = a.tick()
    assert held.ok and held.live == 1
    assert held.fences == dict.fromkeys(range(SHARDS), 1)
    assert len(held.gained) == SHARDS
    assert not any(g.handover or g.continued for g in held.gained)
    assert (a.claims, a.handovers, a.renewals) == (SHARDS, 0, 1)
    again = a.tick()
    assert again.fences == held.fences and again.gained == () and again.lost == frozenset()
    [row] = a.replicas()
    assert (row.id, row.name, row.live, row.shards) == ("a", "pod-a", True, tuple(range(SHARDS)))


def test_three_replicas_split_the_shards_evenly(dsn: str, tables: list[LeaseTable]) -> None:
    replicas = [replica(tables, dsn, rid) for rid in ("c", "a", "b")]
    fences: dict[int, int] = {}
    for _ in range(3):
        for table in replicas:
            held = table.tick()
            for gain in held.gained:
                # Every claim bumps the fence by exactly one.
                assert gain.fence == fences.get(gain.shard, 0) + 1
                fences[gain.shard] = gain.fence
            assert_disjoint(dsn, replicas)
    counts = {t.replica_id: len(t.held()) for t in replicas}
    assert counts == {"a": 22, "b": 21, "c": 21}
    everything = set().union(*(t.held() for t in replicas))
    assert everything == set(range(SHARDS))
    # c ticked first and took everything, then gave the surplus up for a and b.
    assert replicas[0].releases == SHARDS - 21
    assert {r.id: len(r.shards) for r in replicas[0].replicas()} == counts
    assert max(fences.values()) == 2


def test_a_silent_replica_loses_its_shards_to_the_others(
    dsn: str, tables: list[LeaseTable]
) -> None:
    a, b, c = (replica(tables, dsn, rid) for rid in "abc")
    rounds(dsn, [a, b, c], 1)
    # c's leases expire TTL after its last tick, which starts after this.
    start = time.monotonic()
    rounds(dsn, [a, b, c], 1)
    left = c.held()
    assert len(left) == 21
    handovers = a.handovers + b.handovers
    while time.monotonic() < start + TTL + 0.2:
        rounds(dsn, [a, b], 1)
        if time.monotonic() < start + TTL:
            assert not set(left) & (set(a.held()) | set(b.held())), "taken before the TTL"
        time.sleep(renew_every(TTL) / 2)
    rounds(dsn, [a, b], 2)
    assert len(a.held()) == len(b.held()) == 32
    assert a.handovers + b.handovers - handovers == 21
    taken = {**a.held(), **b.held()}
    assert {shard: taken[shard] for shard in left} == {s: f + 1 for s, f in left.items()}
    # The old holder's fence no longer lets it write.
    with connect(dsn) as conn:
        shard, fence = next(iter(left.items()))
        with pytest.raises(Fenced):
            check_fence(conn, shard, "c", fence)
    assert c.held() == {}
    lost = c.tick()
    assert lost.lost == frozenset(left)


def test_a_fourth_replica_gets_its_share_within_two_rounds(
    dsn: str, tables: list[LeaseTable]
) -> None:
    a, b, c = (replica(tables, dsn, rid) for rid in "abc")
    rounds(dsn, [a, b, c], 3)
    released = a.releases + b.releases + c.releases
    d = replica(tables, dsn, "d")
    # d ticks first: it sees no free shard until the others give theirs up.
    last = rounds(dsn, [d, a, b, c], 2)
    assert [len(t.held()) for t in (a, b, c, d)] == [16, 16, 16, 16]
    assert set().union(*(t.held() for t in (a, b, c, d))) == set(range(SHARDS))
    assert a.releases + b.releases + c.releases - released == 16
    assert all(held.live == 4 for held in last)
    assert d.handovers == 16


def test_release_all_frees_the_shards_at_once(dsn: str, tables: list[LeaseTable]) -> None:
    a, b = (replica(tables, dsn, rid) for rid in "ab")
    rounds(dsn, [a, b], 2)
    given = a.held()
    assert a.release_all() == 32
    assert a.held() == {}
    assert [r.id for r in b.replicas()] == ["b"]
    held = b.tick()
    assert held.shards == frozenset(range(SHARDS))
    assert {g.shard for g in held.gained if g.handover} == set(given)
    assert all(held.fences[s] == f + 1 for s, f in given.items())


def test_check_fence(dsn: str, tables: list[LeaseTable]) -> None:
    a = replica(tables, dsn, "a")
    short = replica(tables, dsn, "short", ttl=0.4)
    fence = a.tick().fences[0]
    with connect(dsn) as conn:
        check_fence(conn, 0, "a", fence)
        assert a.check(conn.cursor(), 0) == fence
        for holder, stale in (("a", fence - 1), ("a", fence + 1), ("b", fence)):
            with pytest.raises(Fenced) as caught:
                check_fence(conn, 0, holder, stale)
            assert (caught.value.shard, caught.value.holder) == (0, holder)
        conn.commit()
    a.release_all()
    mine = short.tick().fences[5]
    with connect(dsn) as conn:
        check_fence(conn, 5, "short", mine)
        conn.commit()
        time.sleep(0.5)
        with pytest.raises(Fenced):
            check_fence(conn, 5, "short", mine)
        with pytest.raises(Fenced):
            short.check(conn, 5)


def test_a_database_outage(tables: list[LeaseTable]) -> None:
    with TempPostgres() as server:
        dsn = migrated(server.dsn)
        a, b = (replica(tables, dsn, rid) for rid in "ab")
        rounds(dsn, [a, b], 2)
        before = {"a": a.held(), "b": b.held()}
        server.stop()
        failed = a.tick()
        assert not failed.ok and a.renewal_failures == 1
        assert failed.fences == before["a"], "kept until the local deadline"
        time.sleep(TTL)
        for table in (a, b):
            gone = table.tick()
            assert not gone.ok and gone.leases == () and table.held() == {}
            assert gone.lost == frozenset(before[table.replica_id])
        assert (a.renewal_failures, b.renewal_failures) == (2, 1)
        server.start()
        for table in (a, b):
            back = table.tick()
            assert back.ok, back.error
            mine = before[table.replica_id]
            assert back.fences == {s: f + 1 for s, f in mine.items()}
            assert all(g.continued and not g.handover for g in back.gained)
            assert_disjoint(dsn, [a, b])
        rounds(dsn, [a, b], 1)
        assert {"a": set(a.held()), "b": set(b.held())} == {k: set(v) for k, v in before.items()}
        # A release that cannot reach the database raises, and still stops the polling.
        server.stop()
        with pytest.raises(psycopg.OperationalError):
            a.release_all()
        assert a.held() == {}
        for table in tables:
            table.close()


def test_after_everyone_lapsed_a_replica_first_retakes_its_own(
    dsn: str, tables: list[LeaseTable]
) -> None:
    # What the database sees after an outage: every row and lease lapsed at once.
    a, b = (replica(tables, dsn, rid, ttl=0.5) for rid in "ab")
    rounds(dsn, [a, b], 2)
    before_b = b.held()
    time.sleep(0.6)
    first = a.tick()
    assert first.live == 1 and len(first.leases) == 32, "b's shards wait one tick for b"
    assert all(g.continued for g in first.gained)
    # b never comes back: its shards are taken on a's next tick.
    second = a.tick()
    assert second.shards == frozenset(range(SHARDS))
    taken = [g for g in second.gained if g.shard in before_b]
    assert len(taken) == 32 and all(g.handover and g.previous == "b" for g in taken)


def test_after_a_long_outage_each_replica_retakes_its_own(
    dsn: str, tables: list[LeaseTable]
) -> None:
    # So long that the first replica back deletes the others' rows.
    replicas = [
        LeaseTable(dsn, rid, rid, shards=SHARDS, ttl=0.3, forget_after=0.5) for rid in "abc"
    ]
    tables.extend(replicas)
    rounds(dsn, replicas, 2)
    before = [t.held() for t in replicas]
    handovers = [t.handovers for t in replicas]
    time.sleep(0.3 + 0.5 + 0.1)
    for table, mine in zip(replicas, before, strict=True):
        back = table.tick()
        assert back.fences == {s: f + 1 for s, f in mine.items()}
        assert all(g.continued and not g.handover for g in back.gained)
    assert [t.handovers for t in replicas] == handovers


def test_a_write_in_progress_holds_its_lease(dsn: str, tables: list[LeaseTable]) -> None:
    a, b = (replica(tables, dsn, rid, ttl=0.6) for rid in "ab")
    mine = a.tick().fences
    with connect(dsn) as writer:
        # a's write for shards 0..3 checks its fences; a then goes silent past its TTL.
        for shard in range(4):
            check_fence(writer, shard, "a", mine[shard])
        time.sleep(0.7)
        held = b.tick()
        assert held.shards == frozenset(range(4, SHARDS)), "a shard being written is not claimed"
        writer.commit()
    assert b.tick().shards == frozenset(range(SHARDS))


def test_replicas_ticking_at_once(dsn: str, tables: list[LeaseTable]) -> None:
    replicas = [replica(tables, dsn, rid) for rid in "abcd"]
    errors: list[BaseException] = []

    def run(table: LeaseTable) -> None:
        try:
            for _ in range(12):
                table.tick()
                time.sleep(0.01)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(t,)) for t in replicas]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert [t.renewal_failures for t in replicas] == [0, 0, 0, 0]
    rounds(dsn, replicas, 2)
    assert [len(t.held()) for t in replicas] == [16, 16, 16, 16]
    db = database_view(dsn)
    for shard in range(SHARDS):
        # Fences count the claims: one per claim, whoever made it.
        assert db[shard][1] >= 1
    assert sum(t.claims for t in replicas) == sum(db[s][1] for s in range(SHARDS))
