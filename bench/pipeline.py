"""In-process CPU per observation of collector → pipeline → state → writer (no HTTP source).

    python -m bench.pipeline --accounts 20000 [--rules full|unusual] [--cycles 3] [--no-influx]
        [--profile out.prof]

Drives the real Collector, Pipeline, StateDB, Spool and Writer with synthetic observations in
batches of 100 (a stand-in source returns them) and prints this process's CPU µs per
observation and the points spooled per observation for a first cycle (no stored state, threshold
lines written) and steady-state cycles (two unless --cycles says). `--rules unusual` adds the
unusual rule to every account, each starting with a summary that judges (as `python -m bench
--scenarios unusual` prepares), so its cost shows from the first cycle on. By default a
throwaway influxd takes the writes (its own CPU is not counted); with --no-influx the URL is
unreachable, so the points stay spooled after the first failed write.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import random
import sqlite3
import tempfile
import time
from collections.abc import Sequence
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from followerwatch.clock import ManualClock
from followerwatch.demo.influxd import TempInfluxd
from followerwatch.models import Account, FetchResult, Observation
from followerwatch.net.http import build_client
from followerwatch.poll.collector import Collector
from followerwatch.poll.pipeline import Pipeline
from followerwatch.rules.base import Rule
from followerwatch.rules.health import Frozen, Stale
from followerwatch.rules.lifecycle import Lifecycle
from followerwatch.rules.milestone import Milestones
from followerwatch.rules.threshold import Threshold
from followerwatch.rules.unusual import Summary, Unusual, pack
from followerwatch.rules.window import WindowChange
from followerwatch.state.db import StateDB
from followerwatch.state.rows import summary_value
from followerwatch.store.influx_v1 import InfluxV1Store
from followerwatch.store.spool import Spool
from followerwatch.store.writer import Writer

T0 = datetime(2026, 5, 1, tzinfo=UTC)
BATCH = 100


class Synthetic:
    """A source answering every account with a count that drifts a little each cycle."""

    def __init__(self, clock: ManualClock, seed: int = 7) -> None:
        self.clock = clock
        self.rng = random.Random(seed)

    async def fetch(self, accounts: Sequence[Account]) -> FetchResult:
        """One observation per account at the clock's time."""
        now = self.clock.now()
        rng = self.rng
        return FetchResult(
            observations=tuple(
                Observation(
                    a,
                    now,
                    50 + int(a.name[1:]) % 5000 + rng.randrange(-40, 40),
                    platform_id=str(10**9 + int(a.name[1:])),
                    handle=a.handle,
                )
                for a in accounts
            ),
            requests=1,
        )


def rules_for(kind: str) -> list[Rule]:
    """`bench`: what `python -m bench` watches with (below = 100 + lifecycle); `full`: more;
    `unusual`: `bench` and the unusual rule."""
    rules: list[Rule] = [Threshold("below", 100)]
    if kind == "unusual":
        rules.append(Unusual())
    if kind == "full":
        rules += [
            Threshold("above", 4000, hysteresis=10),
            Milestones(every=1000),
            WindowChange("drop", 3600.0, amount=500),
            Stale(3600.0),
            Frozen(86400.0),
        ]
    return [*rules, Lifecycle()]


def judging(path: Path, accounts: Sequence[Account], now: datetime) -> None:
    """Give every account a stored count and a summary that judges its next reading."""
    StateDB(path).close()  # the schema
    then = int(now.timestamp()) - 300
    text = pack(Summary(1_000, then - 30 * 86_400, then, anchor_count=50.0, spread=1e9))
    when = datetime.fromtimestamp(then, UTC).isoformat()
    rows = [("x", a.name, 50, when, None, a.handle, summary_value(text)) for a in accounts]
    with closing(sqlite3.connect(path)) as db, db:
        db.executemany(
            "INSERT INTO accounts"
            " (platform, account, followers, time, platform_id, handle, summary)"
            " VALUES (?,?,?,?,?,?,?)",
            rows,
        )


async def run(
    n: int,
    rules_kind: str,
    influx_url: str,
    work: Path,
    prof: Path | None,
    profile_cycle: int,
    cycles: int = 3,
) -> list[dict[str, Any]]:
    """`cycles` cycles over n accounts; prints (and returns) CPU µs per observation of each."""
    out: list[dict[str, Any]] = []
    clock = ManualClock(T0)
    accounts = [Account("x", f"u{i}", f"u{i}") for i in range(n)]
    rules = {a.key: rules_for(rules_kind) for a in accounts}
    lines: dict[tuple[str, str], tuple[tuple[str, int], ...]]
    lines = {a.key: (("below", 100),) for a in accounts}
    if rules_kind == "full":
        lines = {a.key: (("below", 100), ("above", 4000)) for a in accounts}
    if rules_kind == "unusual":
        judging(work / "state.sqlite3", accounts, T0)
    async with build_client() as client:
        store = InfluxV1Store(client, url=influx_url, database="bench")
        if not influx_url.endswith(":1"):
            await client.post(f"{influx_url}/query", params={"q": "CREATE DATABASE bench"})
        state = StateDB(work / "state.sqlite3")
        spool = Spool(work / "spool.sqlite3")
        writer = Writer(store, state, spool, clock, backoff_initial=600.0, backoff_max=600.0)
        pipeline = Pipeline(
            state=state,
            writer=writer,
            outbox=None,
            rules=rules,
            clock=clock,
            route=lambda e: ["log"],
            thresholds=lines,
        )
        collector = Collector("x", Synthetic(clock), pipeline, clock)
        batches = [accounts[i : i + BATCH] for i in range(0, n, BATCH)]
        profiler = cProfile.Profile(time.process_time) if prof else None
        added = 0
        for cycle in range(1, cycles + 1):
            cpu, wall = time.process_time(), time.perf_counter()
            if profiler is not None and cycle == profile_cycle:
                profiler.enable()
            for batch in batches:
                await collector.poll(batch)
            if profiler is not None and cycle == profile_cycle:
                profiler.disable()
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            c = spool.counts()
            # Every point this cycle spooled (counts, lines, polls, events, health) per count.
            per_obs, added = (c.added - added) / n, c.added
            print(
                f"cycle {cycle}: {n:,} observations  CPU {cpu:6.2f} s"
                f"  = {cpu / n * 1e6:6.1f} µs/observation  wall {wall:6.2f} s"
                f"  points/observation {per_obs:.3f}"
                f"  spool added {c.added:,} written {c.written:,} spooled {c.spooled:,}"
                f"  balanced {c.balanced}"
            )
            out.append(
                {"cycle": cycle, "cpu_s": cpu, "wall_s": wall, "us_per_obs": cpu / n * 1e6}
                | {"points_per_obs": per_obs}
                | {"counts": c, "events": len(state.events.recent(limit=10**9))}
            )
            clock.advance(300.0)
        if profiler is not None and prof is not None:
            profiler.dump_stats(str(prof))
            print(f"cycle {profile_cycle} profile: {prof}")
        state.close()
        spool.close()
    return out


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    """Parse arguments, start a throwaway influxd unless told not to, run the cycles."""
    parser = argparse.ArgumentParser(prog="python -m bench.pipeline", description=__doc__)
    parser.add_argument("--accounts", type=int, default=20_000)
    parser.add_argument("--rules", choices=["bench", "full", "unusual"], default="bench")
    parser.add_argument("--cycles", type=int, default=3, help="cycles to run (the first included)")
    parser.add_argument("--no-influx", action="store_true", help="unreachable InfluxDB URL")
    parser.add_argument("--profile", type=Path, help="write a cProfile (CPU time) of a cycle here")
    parser.add_argument("--profile-cycle", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fw-bench-pipeline-") as tmp:
        work = Path(tmp)
        if args.no_influx:
            return asyncio.run(
                run(
                    args.accounts,
                    args.rules,
                    "http://127.0.0.1:1",
                    work,
                    args.profile,
                    args.profile_cycle,
                    args.cycles,
                )
            )
        with TempInfluxd(work / "influxd") as influxd:
            return asyncio.run(
                run(
                    args.accounts,
                    args.rules,
                    influxd.url,
                    work,
                    args.profile,
                    args.profile_cycle,
                    args.cycles,
                )
            )


if __name__ == "__main__":
    main()
