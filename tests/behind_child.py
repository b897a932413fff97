"""A child process that polls through the real pipeline and state file, for SIGKILL tests.

`python behind_child.py STATE run ACCOUNTS MINUTES`: every account, one reading a minute, from
just before the oldest stored count on (a killed run's lost counts are read again), with the
write-behind flushing all the time; `python behind_child.py STATE rearm KILL_AT`: one account's
scripted readings, SIGKILLing itself right after reading KILL_AT is evaluated.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bare_pipeline import bare_pipeline
from followerwatch.models import Account, FetchResult, Observation
from followerwatch.poll.pipeline import Pipeline
from followerwatch.rules.lifecycle import Lifecycle
from followerwatch.rules.threshold import Threshold
from followerwatch.state.db import StateDB

T0 = datetime(2026, 9, 1, tzinfo=UTC)
LINE = 5_000  # below = 5000
PERIOD = 20  # minutes: 15 above the line, then 5 below it
# One account's readings for the re-arm test: above, a crossing, back above (the re-arm), steady.
REARM = [9_000, 9_001, 9_002, 4_000, 4_001, 9_100, 9_101, 9_102, 9_103]
REARMED_AT = 5  # the index of the re-arming reading


def count(n: int, minute: int) -> int:
    """Account n's count at a minute: steady (a little noise) above the line, then below."""
    if minute % PERIOD >= 15:
        return 4_000 + minute % 5
    return 10_000 + (7 * minute + n) % 50


def accounts(n: int) -> list[Account]:
    return [Account("x", f"a{i}", f"a{i}") for i in range(n)]


def pipeline(state: StateDB, watched: list[Account]) -> Pipeline:
    rules = [Threshold("below", LINE), Lifecycle()]
    return bare_pipeline(state, {a.key: rules for a in watched}, T0)


def batch(watched: list[Account], minute: int, counts: list[int]) -> FetchResult:
    when = T0 + timedelta(minutes=minute)
    return FetchResult(
        tuple(
            Observation(a, when, c, platform_id=f"id-{a.name}", handle=a.handle)
            for a, c in zip(watched, counts, strict=True)
        )
    )


async def run(path: Path, n: int, minutes: int) -> None:
    watched = accounts(n)
    state = StateDB(path)
    # Flushes all the time, so a kill often lands in one.
    state.behind.rows = max(1, n // 3)
    state.behind.seconds = 0.01
    pipe = pipeline(state, watched)
    seen = state.accounts.last_seen_many(a.key for a in watched)
    start = 0
    if len(seen) == n:
        oldest = min(s.time for s in seen.values())
        start = max(0, int((oldest - T0).total_seconds() // 60) - 2)
    if start < minutes:
        print("polling", flush=True)
    for minute in range(start, minutes):
        await pipe.process(batch(watched, minute, [count(i, minute) for i in range(n)]))
        await asyncio.sleep(0)  # as the service does between polls: flushes land
    state.close()


async def rearm(path: Path, kill_at: int) -> None:
    watched = accounts(1)
    state = StateDB(path)
    pipe = pipeline(state, watched)
    for minute, value in enumerate(REARM):
        await pipe.process(batch(watched, minute, [value]))
        if minute == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
    state.close()


if __name__ == "__main__":
    target, mode = Path(sys.argv[1]), sys.argv[2]
    if mode == "run":
        asyncio.run(run(target, int(sys.argv[3]), int(sys.argv[4])))
    else:
        asyncio.run(rearm(target, int(sys.argv[3])))
