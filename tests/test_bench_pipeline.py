"""bench.pipeline at a tiny scale: every observation is evaluated, spooled and written."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_pipeline_small() -> None:
    sys.path.insert(0, str(ROOT))
    try:
        from bench.pipeline import main
    finally:
        sys.path.remove(str(ROOT))
    n = 250
    cycles = main(["--accounts", str(n)])
    # Per cycle: a count and a threshold line per account, a poll point per batch of 100, and
    # the spool's own health point; and one point per event the rules raised.
    per_cycle = 2 * n + 3 + 1
    assert [c["cycle"] for c in cycles] == [1, 2, 3]
    for i, cycle in enumerate(cycles, start=1):
        counts = cycle["counts"]
        assert counts.added == i * per_cycle + cycle["events"]
        assert counts.written == counts.added and counts.spooled == 0
        assert counts.balanced
        assert cycle["us_per_obs"] > 0
    assert cycles[-1]["events"] > 0  # the rules ran: some counts crossed the line
