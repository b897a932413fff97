"""What the bench prints: every figure, then the issue's targets, measured, met or missed."""

from __future__ import annotations

import math
from typing import Any

from bench import replicas, unusual
from bench.fakes.shapes import LIMITS, PLATFORMS
from bench.startup import rows as startup_rows

# (figure, scenario, key, target, unit, digits): the targets, at its 100,000 accounts.
TARGETS = [
    ("steady cycle, first request → all stored", "cycle", "wall", 5.0, "s", 2),
    ("followerwatch CPU per observation, steady cycle", "cycle", "cpu_us_per_obs", 30.0, "µs", 1),
    ("influxd CPU per steady cycle", "cycle", "influxd_cpu", 1.5, "s", 2),
    ("points per observation, steady cycle", "cycle", "points_per_obs", 1.05, "", 3),
    ("peak RSS", "rss", "maxrss_mb", 150.0, "MB", 0),
    ("1M accounts: RSS", "million", "maxrss_mb", 1024.0, "MB", 0),
    (
        "1M accounts: start-up → first cycle stored",
        "million",
        "startup_to_first_cycle_stored",
        20.0,
        "s",
        1,
    ),
    ("1M accounts: steady cycle, first request → all stored", "million", "wall", 60.0, "s", 1),
    ("alert latency p99", "latency", "p99", 1.0, "s", 3),
]


def summary(out: dict[str, Any], accounts: int) -> list[dict[str, Any]]:
    """Each target whose scenario ran: its measured value and whether it was met."""
    # Peak RSS is the target's at the main size: the largest of its `poll` and `run` processes.
    sized = [r for r in [*out.get("scale", []), *out.get("cycle", [])] if r["n"] == accounts]
    runs: dict[str, dict[str, Any]] = {
        "cycle": (out.get("cycle") or [{}])[0],
        "million": (out.get("million") or [{}])[0],
        "latency": out.get("latency") or {},
        "rss": {"maxrss_mb": max(r["maxrss_mb"] for r in sized), "n": accounts} if sized else {},
    }
    rows = []
    for figure, scenario, key, target, unit, digits in TARGETS:
        run = runs[scenario]
        if key not in run or not isinstance(run[key], float | int) or math.isnan(run[key]):
            continue
        n = run.get("n", run.get("crossings"))
        rows.append(
            {
                "figure": f"{figure} (N={n:,})" if n else figure,
                "scenario": scenario,
                "value": run[key],
                "target": target,
                "unit": unit,
                "digits": digits,
                "met": run[key] <= target,
            }
        )
    for r in out.get("replicas", []):
        rows += replicas.targets(r)
    return rows


def figure_rows(out: dict[str, Any]) -> list[tuple[str, str]]:
    """Every figure of the run, as (name, value) rows."""
    rows: list[tuple[str, str]] = []
    if "unusual" in out:
        rows += unusual.rows(out["unusual"])
    for s in out.get("scale", []):
        tag = f"scale {s['n']:,}"
        rows += [
            (f"{tag}: wall, whole `poll` process", f"{s['wall']:.2f} s"),
            (f"{tag}: first→last API request", f"{s['cycle_requests_span']:.2f} s"),
            (f"{tag}: CPU user+sys", f"{s['cpu']:.2f} s"),
            (f"{tag}: CPU per observation", f"{s['cpu_us_per_obs']:.0f} µs"),
            (f"{tag}: peak RSS", f"{s['maxrss_mb']:.0f} MB"),
            (
                f"{tag}: CPU of the fake API / influxd meanwhile",
                " / ".join(f"{v:.2f} s" for v in s["neighbour_cpu"].values()),
            ),
        ]
        for p in PLATFORMS:
            rows.append(
                (
                    f"{tag}: requests {p} (⌈N/{LIMITS[p]}⌉)",
                    f"{s['requests'][p]} ({s['expected_requests'][p]})",
                )
            )
        rows += [
            (f"{tag}: observations in InfluxDB", f"{s['observations']:,}"),
            (
                f"{tag}: points written / confirmed",
                f"{s['points_written']:,} / {s['points_confirmed']:,}",
            ),
        ]
    mem = out.get("memory")
    if mem:
        rows.append(
            (
                "memory: RSS at " + " / ".join(f"{k:,}" for k in mem["n"]),
                " / ".join(f"{v:.0f} MB" for v in mem["rss_mb"]),
            )
        )
        rows.append(("memory: bytes per account", f"{mem['bytes_per_account']:,.0f}"))
    q = out.get("quota")
    if q:
        rows += [
            (
                f"quota: X 300/{q['window_s']} s, sustained",
                f"{q['rate']:.2f}/s of {q['ceiling']:.2f}/s = {q['fraction']:.1%}",
            ),
            ("quota: 200s per window", ", ".join(map(str, q["per_window"]))),
            ("quota: 429s received", str(q["429s"])),
        ]
    for c in [*out.get("cycle", []), *out.get("million", [])]:
        tag = f"{c['tag']} {c['n']:,}"
        if "error" in c:
            rows += [
                (f"{tag}: did not keep up", f"{c['error']} (ran {c['ran_s']:.0f} s)"),
                (f"{tag}: peak RSS", f"{c['maxrss_mb']:.0f} MB"),
            ]
            continue
        rows += [
            (
                f"{tag}: start-up → first cycle stored",
                f"{c['startup_to_first_cycle_stored']:.2f} s",
            ),
            (f"{tag}: steady cycle, first request → stored", f"{c['wall']:.2f} s"),
            (f"{tag}: steady cycle CPU user+sys", f"{c['cpu']:.2f} s"),
            (f"{tag}: steady cycle CPU per observation", f"{c['cpu_us_per_obs']:.1f} µs"),
            (f"{tag}: steady cycle influxd CPU", f"{c['influxd_cpu']:.2f} s"),
            (
                f"{tag}: steady cycle /write requests, points influxd took",
                f"{c['influxd_write_requests']:,}, {c['influxd_points_received']:,}",
            ),
            (f"{tag}: steady cycle fake API CPU", f"{c['fake_api_cpu']:.2f} s"),
            (
                f"{tag}: steady cycle points / observations",
                f"{c['points']:,} / {c['observations']:,} = {c['points_per_obs']:.3f}",
            ),
            (
                f"{tag}: steady cycle points by measurement",
                ", ".join(f"{k} {v:,}" for k, v in c["points_by_measurement"].items()),
            ),
            (f"{tag}: RSS after / peak", f"{c['rss_mb_after']:.0f} / {c['maxrss_mb']:.0f} MB"),
        ]
        rows += [
            (
                f"{tag}: requests {p} (⌈N/{LIMITS[p]}⌉)",
                f"{c['requests'][p]} ({c['expected_requests'][p]})",
            )
            for p in PLATFORMS
        ]
    lat = out.get("latency")
    if lat:
        rows += [
            (f"alert latency: {lat['delivered']:,}/{lat['crossings']:,} crossings delivered", ""),
            (
                "alert latency: p50 / p99 / max",
                f"{lat['p50'] * 1000:.0f} / {lat['p99'] * 1000:.0f} / {lat['max'] * 1000:.0f} ms",
            ),
        ]
    for r in out.get("replicas", []):
        rows += replicas.rows(r)
    rows += peer_rows(out.get("peer"))
    if out.get("startup"):
        rows += startup_rows(out["startup"])
    return rows


def peer_rows(side: dict[str, Any] | None) -> list[tuple[str, str]]:
    """The side-by-side: the peer baseline, followerwatch, and peer ÷ followerwatch."""
    if not side:
        return []
    tag = f"peer / followerwatch {side['n']:,}"
    them, us = side["peer"], side["followerwatch"]
    rows = [
        (
            f"{tag}: observations stored, 2 passes vs `poll`",
            f"{them['stored']:,} / {us['observations']:,}",
        ),
        (
            f"{tag}: influxd CPU meanwhile, 2 passes vs `poll`",
            f"{them['neighbour_cpu']['influxd']:.2f} / {us['neighbour_cpu']['influxd']:.2f} s",
        ),
    ]
    for what, a, b, ratio in (
        ("pass 1 + start-up vs `poll`", them, us, side["ratio"]),
        ("pass 2 vs steady cycle", them["steady"], us["steady"], side["ratio_steady"]),
    ):
        rows += [
            (f"{tag}: {what}: requests", f"{a['requests']:,} / {b['requests']:,}"),
            (f"{tag}: {what}: wall", f"{a['wall']:.2f} / {b['wall']:.2f} s"),
            (
                f"{tag}: {what}: CPU per observation",
                f"{a['cpu_us_per_obs']:.0f} / {b['cpu_us_per_obs']:.0f} µs",
            ),
            (
                f"{tag}: {what}: peer ÷ followerwatch (requests, wall, CPU)",
                f"{ratio['requests']:.1f}×, {ratio['wall']:.1f}×, {ratio['cpu_us_per_obs']:.1f}×",
            ),
        ]
    return rows


def print_rows(title: str, rows: list[tuple[str, str]]) -> None:
    """Rows as a two-column table."""
    if not rows:
        return
    width = max(len(r[0]) for r in rows)
    print(f"\n{title.ljust(width)} | value\n{'-' * width}-|------")
    for name, value in rows:
        print(f"{name.ljust(width)} | {value}")


def print_report(out: dict[str, Any]) -> None:
    """Every figure, then the issue's targets with what was measured."""
    print_rows("figure", figure_rows(out))
    targets = out.get("summary", [])
    width = max([len(t["figure"]) for t in targets], default=0)
    if targets:
        print(f"\n{'target'.ljust(width)} | target    | measured    | ")
        print(f"{'-' * width}-|-----------|-------------|-------")
    for t in targets:
        goal = f"≤ {t['target']:g} {t['unit']}"
        value = f"{t['value']:.{t['digits']}f} {t['unit']}" if t["value"] < math.inf else "not done"
        verdict = "met" if t["met"] else "MISSED"
        print(f"{t['figure'].ljust(width)} | {goal:<9} | {value:<11} | {verdict}")
