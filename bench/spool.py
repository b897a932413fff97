"""CPU per line of the durable spool alone: add (group commit), peek and ack.

    python -m bench.spool [--lines 200000] [--per-add 100] [--adds-at-once 10] [--backlog 0]

Adds go through `add_async` the way the writer spools a poll group (`--adds-at-once` of them
queued together share one fsynced transaction); after each round the oldest lines are taken
as the writer takes a batch (`peek` of up to 5,000) and acknowledged. `--backlog` lines wait
in the spool first (an InfluxDB outage), so peek and ack work at the head of a long spool.
The figure is this process's CPU (every thread, the committer's included) per line.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from followerwatch.store.spool import Spool

BATCH = 5_000


def line(n: int) -> str:
    """A followers line the size the pipeline writes."""
    return (
        f"followers,account=user{n % 100_000},platform=x distance={n % 977}i,"
        f"followers={100_000 + n}i 1751328000"
    )


async def run(lines: int, per_add: int, at_once: int, backlog: int) -> dict[str, float]:
    """Spool `lines` lines and drain them; CPU and wall seconds, and the figures per line."""
    with tempfile.TemporaryDirectory() as tmp:
        spool = Spool(Path(tmp) / "spool.sqlite3")
        for start in range(0, backlog, BATCH):
            spool.add([line(n) for n in range(start, min(backlog, start + BATCH))])
        groups = [
            [line(n) for n in range(start, start + per_add)]
            for start in range(backlog, backlog + lines, per_add)
        ]
        cpu, wall = time.process_time(), time.perf_counter()
        taken = 0
        for i in range(0, len(groups), at_once):
            round_ = groups[i : i + at_once]
            await asyncio.gather(*(spool.add_async(g) for g in round_))
            # As many lines leave as came in: the spool stays at its backlog.
            due = sum(len(g) for g in round_)
            while due > 0:
                # As the writer takes a batch (`take`; `peek` pairs where there is none).
                if hasattr(spool, "take"):
                    batch: Any = spool.take(min(BATCH, due))
                    done: Any = batch
                else:
                    batch = spool.peek(min(BATCH, due))
                    done = [seq for seq, _ in batch]
                if not batch:
                    break
                spool.ack(done)
                due -= len(batch)
                taken += len(batch)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        counts = spool.counts()
        spool.close()
    assert counts.balanced, counts
    return {"cpu_s": cpu, "wall_s": wall, "cpu_us_per_line": cpu / lines * 1e6, "acked": taken}


def main() -> None:
    """Parse the arguments, run, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--per-add", type=int, default=100)
    parser.add_argument("--adds-at-once", type=int, default=10)
    parser.add_argument("--backlog", type=int, default=0)
    args = parser.parse_args()
    out = asyncio.run(run(args.lines, args.per_add, args.adds_at_once, args.backlog))
    print(
        f"spool add+peek+ack: {args.lines:,} lines, {args.per_add} per add, "
        f"{args.adds_at_once} adds per commit, backlog {args.backlog:,}: "
        f"CPU {out['cpu_s']:.2f} s, wall {out['wall_s']:.2f} s, "
        f"{out['cpu_us_per_line']:.2f} µs CPU per line, {int(out['acked']):,} acked"
    )


if __name__ == "__main__":
    main()
