"""The unusual rule's cost: the steady cycle with `unusual = true` on every account, beside the
same cycle without it (`--scenarios unusual`).

The second cycle of a fresh service would still be learning (the rule judges after 3 days and
24 readings), so the state file is prepared with a judging summary for every account: 30 days
old, a spread far wider than any change the fake API makes (nothing fires), its anchor an hour
before start-up. Both cycles then pay what a judging rule pays per reading: its summary read,
updated, written behind, and the score written as the `unusual` field.
"""

from __future__ import annotations

import math
import sqlite3
import sys
import time
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from followerwatch.analysis.unusual import stored_states
from followerwatch.config.settings import load_config
from followerwatch.rules.unusual import Summary, pack, unpack
from followerwatch.state.db import StateDB
from followerwatch.state.rows import summary_value

DAY = 86_400


def prepare(config: Path) -> int:
    """Give every watched account a judging summary in the state file; how many."""
    cfg = load_config(config)
    path = cfg.settings.service.data_dir / "state.sqlite3"
    StateDB(path).close()  # the schema
    now = int(time.time())
    state = pack(Summary(1_000, now - 30 * DAY, now - 3_600, anchor_count=1.0, spread=1e9))
    # With a stored count (an account without one starts every rule afresh), in the account's
    # row, where summaries are kept (state/values.py SUMMARY_RULE).
    then = datetime.fromtimestamp(now - 3_600, UTC).isoformat()
    stored = summary_value(state)
    rows = [(a.platform, a.name, 1, then, None, None, stored) for a in cfg.accounts]
    with closing(sqlite3.connect(path)) as db, db:
        db.executemany(
            "INSERT OR REPLACE INTO accounts"
            " (platform, account, followers, time, platform_id, handle, summary)"
            " VALUES (?,?,?,?,?,?,?)",
            rows,
        )
    return len(rows)


def judged(config: Path) -> int:
    """How many accounts' summaries in the state file scored their last reading (judged it)."""
    cfg = load_config(config)
    path = cfg.settings.service.data_dir / "state.sqlite3"
    states = stored_states(path, [a.key for a in cfg.accounts])
    texts = (rules.get("unusual") for rules in states.values())
    return sum(1 for text in texts if (s := unpack(text)) is not None and not math.isnan(s.score))


def compare(off: dict[str, Any], on: dict[str, Any], judged: int) -> dict[str, Any]:
    """The rule's share of the steady cycle: CPU and memory per observation."""
    n = on["n"]
    return {
        "n": n,
        "judged": judged,
        "state_bytes_per_account": sys.getsizeof(pack(Summary())),
        "cpu_us_per_obs": [off["cpu_us_per_obs"], on["cpu_us_per_obs"]],
        "rule_cpu_us_per_obs": on["cpu_us_per_obs"] - off["cpu_us_per_obs"],
        "cpu_change": on["cpu_us_per_obs"] / off["cpu_us_per_obs"] - 1,
        "wall": [off["wall"], on["wall"]],
        "influxd_cpu": [off["influxd_cpu"], on["influxd_cpu"]],
        "maxrss_mb": [off["maxrss_mb"], on["maxrss_mb"]],
        "rule_bytes_per_account": (on["maxrss_mb"] - off["maxrss_mb"]) * 2**20 / n,
        "points_per_obs": [off["points_per_obs"], on["points_per_obs"]],
    }


def rows(result: dict[str, Any]) -> list[tuple[str, str]]:
    """The comparison as report rows."""
    off_cpu, on_cpu = result["cpu_us_per_obs"]
    return [
        ("unusual: accounts, rule on everywhere", f"{result['n']:,}"),
        ("unusual: accounts whose last reading was judged", f"{result['judged']:,}"),
        ("unusual: CPU per observation off → on", f"{off_cpu:.1f} → {on_cpu:.1f} µs"),
        (
            "unusual: the rule's CPU per observation",
            f"{result['rule_cpu_us_per_obs']:+.1f} µs ({result['cpu_change']:+.1%})",
        ),
        ("unusual: steady wall off → on", "{:.2f} → {:.2f} s".format(*result["wall"])),
        ("unusual: influxd CPU off → on", "{:.2f} → {:.2f} s".format(*result["influxd_cpu"])),
        ("unusual: peak RSS off → on", "{:.0f} → {:.0f} MB".format(*result["maxrss_mb"])),
        (
            "unusual: memory per account (peak RSS)",
            f"{result['rule_bytes_per_account']:+.0f} B",
        ),
        ("unusual: its summary per account (in memory)", f"{result['state_bytes_per_account']} B"),
        ("unusual: points per observation", "{:.3f} → {:.3f}".format(*result["points_per_obs"])),
    ]
