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
    # Per cycle: a count per account, a poll point per batch of 100, and the spool's own health
    # point; the first cycle also each account's threshold line (issue 18: not again within 4 h);
    # and one point per event the rules raised.
    per_cycle = n + 3 + 1
    assert [c["cycle"] for c in cycles] == [1, 2, 3]
    for i, cycle in enumerate(cycles, start=1):
        counts = cycle["counts"]
        assert counts.added == i * per_cycle + n + cycle["events"]
        assert counts.written == counts.added and counts.spooled == 0
        assert counts.balanced
        assert cycle["us_per_obs"] > 0
    # Points per observation as printed: the first cycle's lines, then one point per count
    # (plus the cycle's poll, health and event points).
    events = [0] + [c["events"] for c in cycles]
    for i, cycle in enumerate(cycles):
        lines = n if i == 0 else 0
        assert cycle["points_per_obs"] == (per_cycle + lines + events[i + 1] - events[i]) / n
    assert cycles[-1]["events"] > 0  # the rules ran: some counts crossed the line


def test_bench_pipeline_unusual_judges_every_reading(tmp_path: Path) -> None:
    """`--rules unusual`: each account starts with a judging summary, so every reading scores."""
    import asyncio
    import math

    sys.path.insert(0, str(ROOT))
    try:
        from bench.pipeline import run
    finally:
        sys.path.remove(str(ROOT))
    from followerwatch.analysis.unusual import stored_states
    from followerwatch.rules.unusual import unpack

    n = 50
    cycles = asyncio.run(run(n, "unusual", "http://127.0.0.1:1", tmp_path, None, 3, 2))
    assert [c["cycle"] for c in cycles] == [1, 2]
    states = stored_states(tmp_path / "state.sqlite3", [("x", f"u{i}") for i in range(n)])
    summaries = [unpack(rules.get("unusual")) for rules in states.values()]
    assert len(summaries) == n
    # Prepared with 1,000 readings; two cycles later each has two more and scored the last.
    for s in summaries:
        assert s is not None and s.readings == 1_002 and not math.isnan(s.score)
