"""A restart in the middle of an unusual drop: no repeat, and it resolves once (real pipeline and
state file; seed 81: 20 days polled hourly, a −20× wave on day 16 for 8 hours)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import pytest

from bare_pipeline import bare_pipeline
from followerwatch.models import Account, EventKind, FetchResult, Observation
from followerwatch.poll.pipeline import Pipeline
from followerwatch.rules.lifecycle import Lifecycle
from followerwatch.rules.unusual import Unusual
from followerwatch.state.db import StateDB
from unusual_series import DAY, START, Wave, generate

ACCOUNT = Account("x", "aplusk", "aplusk")
WAVE = Wave(16 * DAY, 8, 20.0)
TESTS = Path(__file__).parent


def readings() -> list[tuple[datetime, int]]:
    return generate(81, days=20, every=3600, waves=[WAVE]).readings


def pipeline(state: StateDB) -> Pipeline:
    return bare_pipeline(state, {ACCOUNT.key: (Unusual(), Lifecycle())}, START)


async def feed(pipe: Pipeline, part: Sequence[tuple[datetime, int]]) -> None:
    for when, count in part:
        obs = Observation(ACCOUNT, when, count, platform_id="id-1", handle="aplusk")
        await pipe.process(FetchResult((obs,)))


def unusual_events(path: Path) -> list[tuple[EventKind, datetime]]:
    state = StateDB(path)
    try:
        events = [e for e, _ in state.events.recent(1000) if e.rule == "unusual"]
    finally:
        state.close()
    return sorted((e.kind, e.time) for e in events)


def onset_index(series: Sequence[tuple[datetime, int]]) -> int:
    """The index of the first reading inside the wave."""
    start = START.timestamp() + WAVE.start
    return next(i for i, (t, _) in enumerate(series) if t.timestamp() > start)


@pytest.mark.parametrize("after", [1, 3], ids=["at-the-fire", "two-polls-into-it"])
async def test_a_clean_restart_mid_wave_neither_repeats_nor_misses(
    tmp_path: Path, after: int
) -> None:
    series = readings()
    stop = onset_index(series) + after + 1  # the fire comes with the wave's second reading
    path = tmp_path / "state.sqlite3"
    state = StateDB(path)
    await feed(pipeline(state), series[:stop])
    state.close()
    fired = unusual_events(path)
    assert [k for k, _ in fired] == [EventKind.UNUSUAL_DROP]
    state = StateDB(path)
    await feed(pipeline(state), series[stop:])
    state.close()
    kinds = [k for k, _ in unusual_events(path)]
    assert sorted(kinds) == [EventKind.UNUSUAL_CLEARED, EventKind.UNUSUAL_DROP]


CHILD = """
import asyncio, os, signal, sys
sys.path.insert(0, {tests!r})
from pathlib import Path
import test_unusual_restart as t
from followerwatch.state.db import StateDB

async def main():
    series = t.readings()
    state = StateDB(Path({path!r}))
    pipe = t.pipeline(state)
    await t.feed(pipe, series[:{stop}])
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())
"""


@pytest.mark.parametrize("after", [1, 2, 4], ids=["at-the-fire", "a-poll-after", "3-polls-after"])
async def test_sigkill_mid_wave_neither_repeats_nor_misses(tmp_path: Path, after: int) -> None:
    # The summary's updates after the fire wait in memory (written behind) and die with the
    # process; the fire itself was committed with its event.
    series = readings()
    stop = onset_index(series) + after + 1
    path = tmp_path / "state.sqlite3"
    code = CHILD.format(tests=str(TESTS), path=str(path), stop=stop)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=120)
    assert done.returncode == -9, done.stderr.decode()[-2000:]
    assert [k for k, _ in unusual_events(path)] == [EventKind.UNUSUAL_DROP]
    state = StateDB(path)
    await feed(pipeline(state), series[stop:])
    state.close()
    kinds = [k for k, _ in unusual_events(path)]
    assert sorted(kinds) == [EventKind.UNUSUAL_CLEARED, EventKind.UNUSUAL_DROP]
