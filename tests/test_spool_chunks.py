"""The spool's file holds a row per add; lines keep their numbers through acks, drops and
dead letters, an old per-line file is migrated whole, and the ledger counts lines."""

from __future__ import annotations

import json
import random
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from followerwatch.clock import ManualClock
from followerwatch.demo.influxd import TempInfluxd
from followerwatch.state.db import StateDB
from followerwatch.store.influx_v1 import InfluxV1Store
from followerwatch.store.spool import CHUNK_LINES, Spool
from followerwatch.store.writer import Writer

T0 = datetime(2026, 8, 1, tzinfo=UTC)
DB = "spool_chunks"

# The format before chunks: a row per line (and its AUTOINCREMENT sequence).
OLD_SCHEMA = """
CREATE TABLE spool (seq INTEGER PRIMARY KEY AUTOINCREMENT, line TEXT NOT NULL);
CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT INTO counters VALUES ('added', 0), ('written', 0), ('dropped', 0),
    ('dead_lettered', 0), ('dropped_disk_full', 0);
"""


def rows(path: Path) -> list[tuple[int, int, str]]:
    """The file's rows, read through a connection of our own."""
    with sqlite3.connect(path) as db:
        return db.execute("SELECT seq, n, lines FROM chunks ORDER BY seq").fetchall()


def m(i: int) -> str:
    return f"m,t=a v={i}i {1_700_000_000 + i}"


def test_an_old_per_line_file_is_migrated_with_every_waiting_line_in_order(
    tmp_path: Path,
) -> None:
    path = tmp_path / "spool.sqlite3"
    waiting = [m(i) for i in range(2 * CHUNK_LINES + 345)]
    with sqlite3.connect(path) as db:
        db.executescript(OLD_SCHEMA)
        db.executemany("INSERT INTO spool (line) VALUES (?)", [(m(-1),), (m(-2),)])
        db.executemany("INSERT INTO spool (line) VALUES (?)", [(ln,) for ln in waiting])
        # Two were written already: a gap at the head of the seqs, as a running spool leaves.
        db.execute("DELETE FROM spool WHERE seq <= 2")
        db.execute("UPDATE counters SET value = 7 + ? WHERE name = 'added'", (len(waiting) + 2,))
        db.execute("UPDATE counters SET value = 2 WHERE name = 'written'")
        db.execute("UPDATE counters SET value = 7 WHERE name = 'dropped'")
    spool = Spool(path)
    counts = spool.counts()
    assert (counts.spooled, counts.written, counts.dropped) == (len(waiting), 2, 7)
    assert counts.balanced
    assert [line for _, line in spool.peek(10 * CHUNK_LINES, 10**9)] == waiting
    spool.add([m(10_000)])  # new lines go behind the migrated ones
    assert spool.newest_with_prefix(2, "m,") == 2
    spool.close()
    with sqlite3.connect(path) as db:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
    assert "spool" not in tables
    assert [n for _, n, _ in rows(path)] == [CHUNK_LINES, CHUNK_LINES, 345, 1]
    reopened = Spool(path)  # a second open finds nothing to migrate and changes nothing
    lines = [line for _, line in reopened.peek(10 * CHUNK_LINES, 10**9)]
    assert lines == [*waiting, m(10_000)] and reopened.counts().balanced
    reopened.close()


def test_an_add_is_one_row_and_acks_and_dead_letters_trim_it_around_kept_numbers(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path / "spool.sqlite3")
    spool.add([m(i) for i in range(10)])
    spool.add([m(i) for i in range(10, 15)])
    assert [n for _, n, _ in rows(spool.path)] == [10, 5]
    peeked = spool.peek(100)
    numbers = [seq for seq, _ in peeked]
    assert numbers == list(range(numbers[0], numbers[0] + 15))
    spool.ack(numbers[:4])  # the head of the first chunk
    spool.dead_letter([peeked[6]], "bad")  # one line in the middle: the chunk splits in two
    spool.ack([numbers[9], numbers[10]])  # across the two chunks' boundary
    assert spool.peek(100) == [peeked[i] for i in (4, 5, 7, 8, 11, 12, 13, 14)]
    assert [n for _, n, _ in rows(spool.path)] == [2, 2, 4]
    counts = spool.counts()
    assert (counts.written, counts.dead_lettered, counts.spooled) == (6, 1, 8) and counts.balanced
    # Acking lines again (a re-sent batch) or numbers never spooled counts nothing.
    spool.ack([*numbers[:4], numbers[-1] + 100])
    assert spool.counts() == counts
    [dead] = [json.loads(ln) for ln in spool.dead_letter_path.read_text().splitlines()]
    assert dead["line"] == m(6)
    spool.close()


def test_peek_takes_part_of_a_chunk_and_the_rest_keeps_its_numbers(
    make_spool: Callable[..., Any],
) -> None:
    spool = make_spool()
    spool.add([m(i) for i in range(10)])
    first = spool.peek(3)
    assert [line for _, line in first] == [m(0), m(1), m(2)]
    spool.ack([seq for seq, _ in first])
    rest = spool.peek(100, max_bytes=3 * (len(m(3)) + 1))  # about three lines' bytes
    assert [line for _, line in rest] == [m(3), m(4), m(5)]
    assert rest[0][0] == first[-1][0] + 1
    spool.close()


def test_the_cap_drops_the_oldest_lines_across_chunks(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.sqlite3", cap=25)
    for start in (0, 10, 20):
        spool.add([m(i) for i in range(start, start + 10)])
    # 30 lines, 25 kept: the first chunk loses its head, its other lines keep their numbers.
    numbered = dict((line, seq) for seq, line in spool.peek(100))
    assert [line for _, line in spool.peek(100)] == [m(i) for i in range(5, 30)]
    assert spool.add([m(i) for i in range(30, 50)]) == 20  # the rest of 1, all of 2, half of 3
    kept = spool.peek(100)
    assert [line for _, line in kept] == [m(i) for i in range(25, 50)]
    assert all(numbered[line] == seq for seq, line in kept if line in numbered)
    assert [n for _, n, _ in rows(spool.path)] == [5, 20]
    counts = spool.counts()
    assert (counts.added, counts.dropped, counts.spooled) == (50, 25, 25) and counts.balanced
    # An add bigger than the cap keeps only its own newest lines.
    assert spool.add([m(i) for i in range(50, 90)]) == 40
    assert [line for _, line in spool.peek(100)] == [m(i) for i in range(65, 90)]
    assert spool.counts().balanced
    spool.close()


def test_a_random_mix_matches_a_list_and_the_ledger_always_balances(
    make_spool: Callable[..., Any],
) -> None:
    rng = random.Random(18)
    cap = 300
    spool = make_spool(cap=cap)
    model: list[tuple[int, str]] = []  # what the spool should hold, oldest first
    written = dead = dropped = added = 0
    known: list[int] = []  # every number handed out, for acks of lines gone already
    for step in range(400):
        op = rng.random()
        if op < 0.45:
            lines = [f"m,s={step} v={i}i" for i in range(rng.choice([1, 2, 7, 40, 120]))]
            over = spool.add(lines)
            added += len(lines)
            full = spool.peek(10**6, 10**9)
            # Past the cap go the oldest, which may be some of this add's own lines.
            assert over == max(0, len(model) + len(lines) - cap)
            kept = model[over:]
            new = full[len(kept) :]
            assert full[: len(kept)] == kept
            assert [ln for _, ln in new] == lines[len(lines) - len(new) :]
            assert len(full) == min(cap, len(model) + len(lines))
            # Fresh numbers: consecutive, above every number handed out before.
            numbers = [seq for seq, _ in new]
            assert numbers == list(range(numbers[0], numbers[0] + len(new))) if new else True
            assert not new or numbers[0] > max(known, default=0)
            model = kept + new
            known += numbers
            dropped += over
        elif op < 0.8 and model:
            batch = spool.peek(rng.randint(1, 150))
            assert batch == model[: len(batch)]
            take = [p for p in batch if rng.random() < 0.7]  # bisection leaves such subsets
            stale = rng.sample(known, min(3, len(known)))  # acked or dropped before
            spool.ack([seq for seq, _ in take] + stale)
            gone = {seq for seq, _ in take} | set(stale)
            written += sum(1 for seq, _ in model if seq in gone)
            model = [p for p in model if p[0] not in gone]
        elif model:
            victim = rng.choice(model)
            spool.dead_letter([victim], "no")
            dead += 1
            model.remove(victim)
        counts = spool.counts()
        assert counts.balanced, (step, counts)
        expected = (added, written, dropped, dead, len(model))
        assert (counts.added, counts.written, counts.dropped, counts.dead_lettered) == expected[:4]
        assert counts.spooled == len(model)
    assert spool.peek(10**6, 10**9) == model
    spool.close()


async def test_a_partial_rejection_dead_letters_exactly_the_bad_lines_of_a_chunk(
    tmp_path: Path, influxd: TempInfluxd
) -> None:
    influxd.query(f'CREATE DATABASE "{DB}"')
    spool = Spool(tmp_path / "spool.sqlite3")
    state = StateDB(tmp_path / "state.sqlite3")
    base = int(T0.timestamp())

    def line(account: str, minute: int, value: str) -> str:
        return f"followers,account={account},platform=x followers={value} {base + 60 * minute}"

    # followers is an integer field; two float lines in two chunks InfluxDB will never take.
    first = [line("a", i, "7.5" if i == 13 else f"{i}i") for i in range(30)]
    second = [line("b", i, "7.5" if i == 4 else f"{i}i") for i in range(20)]
    async with httpx.AsyncClient() as client:
        store = InfluxV1Store(client, url=influxd.url, database=DB)
        await store.write_lines([line("z", 0, "1i")])
        writer = Writer(store, state, spool, ManualClock(T0), health_every=None)
        spool.add(first)
        spool.add(second)
        await writer.flush()
        stored = await store.query('SELECT count(followers) FROM "followers" GROUP BY account')
    counts = spool.counts()
    state.close()
    spool.close()
    assert (counts.written, counts.dead_lettered, counts.spooled) == (48, 2, 0) and counts.balanced
    assert rows(spool.path) == []
    dead = [json.loads(ln)["line"] for ln in spool.dead_letter_path.read_text().splitlines()]
    assert dead == [first[13], second[4]]
    by_account = {s["tags"]["account"]: s["values"][0][1] for s in stored}
    assert by_account == {"a": 29, "b": 19, "z": 1}


def test_a_batch_splits_inside_a_chunk_and_gives_back_exactly_its_lines(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool.sqlite3")
    spool.add([m(i) for i in range(6)])
    spool.add([m(i) for i in range(6, 10)])
    batch = spool.take(100)
    assert len(batch) == 10 and len(batch.runs) == 2
    assert batch.ranges() == [(batch.runs[0][0], batch.runs[0][0] + 10)]  # the runs meet
    first, rest = batch.split(8)  # inside the second chunk
    assert first.lines == [m(i) for i in range(8)] and rest.lines == [m(8), m(9)]
    assert first.pairs() + rest.pairs() == batch.pairs() == spool.peek(100)
    assert first.size + rest.size == batch.size == sum(len(m(i)) + 1 for i in range(10))
    head, tail = rest.split(1)
    spool.ack(first)
    spool.dead_letter(head, "no")
    assert spool.peek(100) == tail.pairs()
    spool.ack(tail)
    counts = spool.counts()
    assert (counts.written, counts.dead_lettered, counts.spooled) == (9, 1, 0) and counts.balanced
    spool.close()
