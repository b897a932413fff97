"""Issue 15's review: suspect zeros, readiness and drops at a full disk's edges (real SQLite)."""

from __future__ import annotations

import errno
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from structlog.testing import capture_logs

from bare_pipeline import bare_pipeline
from followerwatch.clock import ManualClock
from followerwatch.demo.influxd import TempInfluxd
from followerwatch.disk.full import MemoryBuffer
from followerwatch.models import Account, FetchResult, Observation, Point
from followerwatch.poll.pipeline import Pipeline
from followerwatch.poll.waiting import WaitingBatches
from followerwatch.rules.threshold import Threshold
from followerwatch.state.db import StateDB
from followerwatch.store.influx_v1 import InfluxV1Store
from followerwatch.store.lineprotocol import encode
from followerwatch.store.spool import Spool
from followerwatch.store.writer import Writer
from smallfs import small_fs
from test_disk_full import fill

T0 = datetime(2026, 8, 1, tzinfo=UTC)
X = Account("bluesky", "x", "x")
CROWD = [Account("bluesky", f"u{i}", f"u{i}") for i in range(3000)]


def pipeline(state: StateDB, buffer: int = 100_000) -> Pipeline:
    rules = {a.key: [Threshold("below", 100_000)] for a in [X, *CROWD]}
    return bare_pipeline(state, rules, T0, buffer=MemoryBuffer(buffer))


def at(minute: int, *counts: tuple[Account, int]) -> FetchResult:
    when = T0 + timedelta(minutes=minute)
    return FetchResult(tuple(Observation(a, when, n) for a, n in counts))


def fill_state(state: StateDB) -> None:
    """The committer's disk takes no new page (a real SQLITE_FULL on the next growth)."""
    db = state.committer._group._db
    db.execute(f"PRAGMA max_page_count={db.execute('PRAGMA page_count').fetchone()[0]}")


def free_state(state: StateDB) -> None:
    state.committer._group._db.execute("PRAGMA max_page_count=1073741823")


async def test_a_zero_released_in_its_own_batch_is_not_left_on_disk(tmp_path: Path) -> None:
    state = StateDB(tmp_path / "state.sqlite3")
    pipe = pipeline(state)
    await pipe.process(at(0, (X, 250_000)))
    # One batch: a glitch 0, then the real count again a minute later.
    batch = FetchResult(
        (
            Observation(X, T0 + timedelta(minutes=1), 0),
            Observation(X, T0 + timedelta(minutes=2), 250_000),
        )
    )
    await pipe.process(batch)
    on_disk = state.accounts.held_zeros()
    state.close()
    assert pipe.suspects.by_platform() == {}
    assert on_disk == {}


async def test_a_recovery_the_full_disk_dropped_confirms_no_later_glitch(tmp_path: Path) -> None:
    state = StateDB(tmp_path / "state.sqlite3")
    pipe = pipeline(state, buffer=0)  # nothing may wait in memory: a refused batch is dropped
    await pipe.process(at(0, (X, 250_000)))
    rows = await pipe.process(at(1, (X, 0)))
    assert rows[0].suspect
    fill_state(state)
    # The count is back, but this batch (with many new accounts) cannot be committed: dropped.
    rows = await pipe.process(at(5, (X, 250_000), *((a, 500_000) for a in CROWD)))
    assert rows[0].failure == "dropped: disk and memory buffer full"
    # Memory says what the disk says: the zero of minute 1 is still held.
    assert pipe.suspects.by_platform() == {"bluesky": 1}
    assert [h.time for h in state.accounts.held_zeros()[X.key]] == [T0 + timedelta(minutes=1)]
    free_state(state)
    await pipe.process(at(6, (X, 250_000)))  # stored: the fall is over, on disk too
    assert state.accounts.held_zeros() == {}
    state.close()
    # A restart (or the next cron poll), then a one-minute glitch 19 minutes after minute 1.
    state = StateDB(tmp_path / "state.sqlite3")
    pipe = pipeline(state)
    rows = await pipe.process(at(20, (X, 0)))
    events = state.events.unstored_events()
    stored = state.accounts.last_seen(*X.key)
    state.close()
    assert rows[0].suspect and not rows[0].events
    assert events == []
    assert stored is not None and stored.followers == 250_000


async def test_held_zeros_older_than_a_stored_count_confirm_nothing(tmp_path: Path) -> None:
    state = StateDB(tmp_path / "state.sqlite3")
    service = pipeline(state)
    await service.process(at(0, (X, 250_000)))
    await service.process(at(1, (X, 0)))  # held, in the service's memory
    # A cron poll on the same data folder stores the count back (and releases the zero).
    cron_state = StateDB(tmp_path / "state.sqlite3")
    await pipeline(cron_state).process(at(2, (X, 250_000)))
    cron_state.close()
    # 19 minutes after the stale zero: a glitch of its own, not a fall that lasted.
    rows = await service.process(at(20, (X, 0)))
    on_disk = state.accounts.held_zeros()
    events = state.events.unstored_events()
    state.close()
    assert rows[0].suspect and not rows[0].events
    assert events == []
    assert [h.time for h in on_disk[X.key]] == [T0 + timedelta(minutes=20)]


async def test_readiness_clears_after_a_dropped_batch_once_a_store_succeeds(
    tmp_path: Path,
) -> None:
    state = StateDB(tmp_path / "state.sqlite3")
    pipe = pipeline(state, buffer=10)
    fill_state(state)
    rows = await pipe.process(at(0, *((a, 500_000) for a in CROWD)))
    assert rows[0].failure == "dropped: disk and memory buffer full"
    assert pipe.waiting.problem is not None
    free_state(state)
    await pipe.process(at(1, (X, 250_000)))
    stored = state.accounts.last_seen(*X.key)
    state.close()
    assert stored is not None
    assert pipe.waiting.problem is None


async def test_batches_past_the_count_bound_are_counted_and_logged() -> None:
    async def ready(batch: str) -> str:
        return batch

    async def store(batch: str) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    buffer = MemoryBuffer(2)
    waiting: WaitingBatches[str] = WaitingBatches(buffer, ready, store)
    with capture_logs() as logs:
        # Batches without readings (a platform down) and with one: the third is one too many.
        kept = [waiting.hold("down", 0), waiting.hold("poll1", 1), waiting.hold("poll2", 1)]
    await waiting.close()
    assert kept == [True, True, False]
    assert buffer.dropped == 1
    assert any("dropped" in entry["event"] for entry in logs)


async def test_a_shutdown_with_the_disk_still_full_does_not_say_it_has_space(
    tmp_path: Path,
) -> None:
    state = StateDB(tmp_path / "state.sqlite3")
    pipe = pipeline(state)
    fill_state(state)
    await pipe.process(at(0, *((a, 500_000) for a in CROWD)))
    assert pipe.waiting.readings == len(CROWD)
    with capture_logs() as logs:
        lost = await pipe.waiting.close()
    state.close()
    assert lost == len(CROWD)
    assert pipe.waiting.problem is not None
    events = [entry["event"] for entry in logs]
    assert not any("space again" in e for e in events)
    assert any("disk still full at shutdown" in e for e in events)


async def test_a_held_batch_that_keeps_failing_is_dropped_and_the_rest_stored(
    tmp_path: Path,
) -> None:
    state = StateDB(tmp_path / "state.sqlite3")
    pipe = pipeline(state)
    fill_state(state)
    await pipe.process(at(0, *((a, 500_000) for a in CROWD)))  # held: the disk is full
    # Held behind it: a count SQLite cannot store (not a disk error), then a good one.
    await pipe.process(at(1, (X, 2**70)))
    await pipe.process(at(2, (X, 250_000)))
    free_state(state)
    with capture_logs() as logs:
        tries = [await pipe.waiting.replay() for _ in range(3)]
    stored = state.accounts.last_seen(*X.key)
    crowd = len(state.accounts.last_seen_many(a.key for a in CROWD))
    state.close()
    assert tries == [False, False, True]
    assert stored is not None and stored.followers == 250_000
    assert crowd == len(CROWD)
    assert pipe.waiting.buffer.dropped == 1
    assert [e["event"] for e in logs if "dropped" in e["event"]] == [
        "a held batch kept failing to store; dropped"
    ]
    assert pipe.waiting.problem is None


async def test_the_writer_is_ready_again_once_the_spool_takes_a_write(
    tmp_path: Path, influxd: TempInfluxd
) -> None:
    influxd.query('CREATE DATABASE "edges"')
    state = StateDB(tmp_path / "state.sqlite3")
    with small_fs(tmp_path / "data", "2m") as data:
        spool = Spool(data / "spool.sqlite3")
        async with httpx.AsyncClient() as client:
            store = InfluxV1Store(client, url=influxd.url, database="edges", precision="ns")
            writer = Writer(store, state, spool, ManualClock(T0), health_every=None)
            await spool.add_async([encode(Point("m", (("t", "a"),), (("f", 1),), T0), "ns")])
            fill(data / "filler")
            await writer.flush()  # InfluxDB has the line; the disk refuses its ack
            refused = writer.disk_problem
            (data / "filler").unlink()
            await writer.write([Point("m", (("t", "a"),), (("f", 2),), T0)])
            problem = writer.disk_problem
            left = spool.size()
        spool.close()
    state.close()
    assert refused is not None and "full" in refused
    assert problem is None
    assert left == 0
