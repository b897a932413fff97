"""The spool on PostgreSQL, shared by replicas: takes claim their lines, so two writers never
send one line at once; a dead writer's lines go to another after the claim's TTL; an outage
is a clear error and the spool works again once the database is back."""

from __future__ import annotations

import threading
import time

import pytest

from backend_fixture import migrated, pg_spool
from followerwatch.demo.postgres import TempPostgres
from followerwatch.store.pg_spool import SpoolUnavailable


def m(i: int) -> str:
    return f"m,t=a v={i}i {1_700_000_000 + i}"


def test_add_take_ack_and_dead_letter_round_trip(pg_dsn: str) -> None:
    spool = pg_spool(migrated(pg_dsn), cap=12)
    assert spool.add([m(i) for i in range(10)]) == 0
    assert spool.add([m(i) for i in range(10, 15)]) == 3  # the cap drops the oldest
    batch = spool.take(5)
    assert list(batch.lines) == [m(i) for i in range(3, 8)]
    numbers = [seq for seq, _ in batch.pairs()]
    assert numbers == list(range(numbers[0], numbers[0] + 5))
    first, rest = batch.split(2)
    spool.ack(first)
    spool.dead_letter(rest.split(1)[0], "bad point")
    spool.ack([numbers[3], numbers[3] + 100])  # one line, and a number never spooled
    assert spool.dead_letters() == [("bad point", m(5))]
    # The line left of the batch comes back first: a take after a failed write re-takes it.
    assert spool.peek(100) == [
        (numbers[4], m(7)),
        *[(numbers[4] + i, m(7 + i)) for i in range(1, 8)],
    ]
    counts = spool.counts()
    assert (counts.added, counts.written, counts.dropped, counts.dead_lettered) == (15, 3, 3, 1)
    assert counts.spooled == spool.size() == 8 and counts.balanced
    spool.ack(numbers[:2])  # acked twice (a re-sent batch): counted once
    assert spool.counts() == counts
    assert spool.newest_with_prefix(3, "m,") == 3
    assert spool.newest_with_prefix(3, "other,") == 0
    spool.add_dropped(4)
    counts = spool.counts()
    assert (counts.added, counts.dropped_disk_full) == (19, 4) and counts.balanced
    spool.close()


def test_concurrent_takers_never_hold_the_same_line(pg_dsn: str) -> None:
    dsn = migrated(pg_dsn)
    lines = [m(i) for i in range(3000)]
    adder = pg_spool(dsn)
    for i in range(0, len(lines), 250):
        adder.add(lines[i : i + 250])
    taken: dict[str, list[int]] = {"r0": [], "r1": [], "r2": []}
    errors: list[BaseException] = []

    def writer(replica: str) -> None:
        spool = pg_spool(dsn, replica)
        try:
            while batch := spool.take(97):
                taken[replica] += [seq for seq, _ in batch.pairs()]
                time.sleep(0.001)  # "writing": the others take meanwhile
                spool.ack(batch)
        except BaseException as exc:
            errors.append(exc)
        finally:
            spool.close()

    threads = [threading.Thread(target=writer, args=(r,)) for r in taken]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    every = [seq for seqs in taken.values() for seq in seqs]
    assert len(every) == len(set(every)) == len(lines)  # each line sent by one writer, once
    assert sum(1 for seqs in taken.values() if seqs) >= 2
    counts = adder.counts()
    assert (counts.written, counts.spooled) == (len(lines), 0) and counts.balanced
    adder.close()


def test_a_dead_writers_lines_are_taken_by_another_after_the_ttl(pg_dsn: str) -> None:
    dsn = migrated(pg_dsn)
    dead, alive = pg_spool(dsn, "dead", ttl=1.0), pg_spool(dsn, "alive", ttl=1.0)
    dead.add([m(i) for i in range(10)])
    held = dead.take(6)
    assert list(alive.take(100).lines) == [m(i) for i in range(6, 10)]
    assert list(dead.take(100).lines) == [m(i) for i in range(6)]  # its own, taken again
    time.sleep(1.2)
    assert list(alive.take(100).lines) == [m(i) for i in range(10)]
    alive.ack(alive.take(100))
    dead.ack(held)  # late: those lines were written already, and count once
    counts = alive.counts()
    assert (counts.written, counts.spooled) == (10, 0) and counts.balanced
    dead.close()
    alive.close()


async def test_an_outage_is_a_clear_error_and_the_spool_works_again_after_it(
    postgres: TempPostgres, pg_dsn: str
) -> None:
    spool = pg_spool(migrated(pg_dsn))
    spool.add([m(0)])
    postgres.stop()
    try:
        with pytest.raises(SpoolUnavailable):
            spool.add([m(1)])
        with pytest.raises(SpoolUnavailable):
            await spool.add_async([m(1)])
        with pytest.raises(OSError):  # what the writer's disk handling catches
            spool.take(10)
    finally:
        postgres.start()
    await spool.add_async([m(1)])
    assert list(spool.take(10).lines) == [m(0), m(1)]
    counts = spool.counts()
    assert (counts.added, counts.spooled) == (2, 2) and counts.balanced
    spool.close()
