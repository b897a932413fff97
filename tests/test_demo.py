"""`followerwatch demo` end to end against the real influxd, as the README runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from followerwatch.analysis.unusual import format_score
from followerwatch.demo.influxd import TempInfluxd
from followerwatch.demo.replay import DATABASE, replay_file
from followerwatch.demo.story import falls, flagged, story
from followerwatch.sources.replay import read_replay

MILLION = 1_000_000


def first_row(series: list[tuple[datetime, int]], below: bool, after: datetime) -> datetime:
    """Straight from the CSV: the first row after `after` above (or below) the million."""
    return next(t for t, v in series if t > after and (v < MILLION if below else v >= MILLION))


def influxql(url: str, query: str) -> list[dict[str, Any]]:
    """One statement on the demo's database; its series (time in epoch seconds)."""
    answer = httpx.post(
        f"{url}/query", data={"q": query}, params={"db": DATABASE, "epoch": "s"}, timeout=10
    ).json()
    series: list[dict[str, Any]] = answer["results"][0].get("series", [])
    return series


def when(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def stored_unusual(url: str) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """@aplusk's stored events, oldest first: (time, kind, value, threshold, score), split into
    the unusual rule's and the others."""
    [series] = influxql(
        url,
        "SELECT kind, value, threshold, score, rule FROM followerwatch_events"
        " WHERE account = 'aplusk'",
    )
    rows = [(when(t), k, v, th, sc, rule) for t, k, v, th, sc, rule in series["values"]]
    return (
        [r[:5] for r in rows if r[5] == "unusual"],
        [r[:5] for r in rows if r[5] != "unusual"],
    )


def stored_scores(url: str) -> dict[str, list[tuple[datetime, float]]]:
    """Each account's stored `unusual` scores, oldest first (only points that carry one)."""
    series = influxql(url, "SELECT unusual FROM followers GROUP BY account")
    return {s["tags"]["account"]: [(when(t), v) for t, v in s["values"]] for s in series}


def field_type(url: str, name: str) -> str:
    [series] = influxql(url, "SHOW FIELD KEYS FROM followers")
    return str(dict(map(tuple, series["values"]))[name])


def test_demo_replays_alerts_and_lands_points(influxd: TempInfluxd, tmp_path: Path) -> None:
    httpx.post(f"{influxd.url}/query", params={"q": f'DROP DATABASE "{DATABASE}"'})
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "followerwatch",
            "demo",
            "--influx-url",
            influxd.url,
            "--seconds",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "COLUMNS": "160"},
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = " ".join(result.stdout.split())  # rich wraps long lines
    assert "illustrative, not historical" in out
    assert "@aplusk on x crossed above 1,000,000 followers" in out
    assert "@aplusk on x dropped below 1,000,000 followers" in out
    assert "@cnnbrk on x crossed above 1,000,000 followers" in out
    summary = next(line for line in result.stdout.splitlines() if "│ @aplusk" in line)
    cells = [cell.strip() for cell in summary.split("│")[1:-1]]
    assert cells[6] == "360"  # every replayed hour landed in InfluxDB
    assert "@aplusk on x lost" in out and "followers (-" in out and "within 1d" in out
    # Crossings, the window drop and its clearing, three projections before crossings, and
    # the unusual drop and its end.
    assert "Webhook receiver got 10 alert(s)" in out
    assert "at the current rate @aplusk reaches 1,000,000 in about" in out
    assert "See it in Grafana" in out and "--keep-running" not in out
    # The replay ends with the Unfollow Day impact report (control: @cnnbrk).
    assert "the campaign cost @aplusk about" in out and "goal below 1,000,000: reached at" in out
    assert "chart: " in out and (tmp_path / "unfollow-day.png").stat().st_size > 20_000

    # The narration, merged with the alerts in replay time; its crossing times are the CSV's.
    rows = read_replay(replay_file(), "x")
    start = rows["aplusk"][0][0]
    up = first_row(rows["aplusk"], False, start)
    cnn_up = first_row(rows["cnnbrk"], False, start)
    down = first_row(rows["aplusk"], True, up)
    assert (up, cnn_up - up) == (datetime(2009, 4, 17, 6, tzinfo=UTC), timedelta(hours=2))

    def at(text: str) -> int:
        assert text in out, text
        return out.index(text)

    # The unusual rule, read back: one drop for @aplusk, before the million is lost.
    unusual, lines = stored_unusual(influxd.url)
    [(flag, rate, typical, score)] = [
        (t, v, th, sc) for t, k, v, th, sc in unusual if k == "unusual_drop"
    ]
    [fell] = [t for t, k, *_ in lines if k == "dropped_below"]
    assert flag < fell == down and rate < 0 and score is not None and score < 0
    assert [k for _, k, *_ in unusual] == ["unusual_drop", "unusual_cleared"]
    got = out.split("Webhook receiver got", 1)[1].split("──", 1)[0]
    assert got.count("aplusk unusual_drop") == 1  # delivered once
    assert got.index("aplusk unusual_drop") < got.index("aplusk dropped_below")
    assert out.count(f"alert [{flag:%d %b %H:%M}] @aplusk on x is losing") == 1  # told once
    # Its score is beside the last count, and the lowest one in the table (cnnbrk: no rule).
    scores = stored_scores(influxd.url)
    assert cells[4] == format_score(scores["aplusk"][-1][1])
    assert cells[5] == format_score(min(s for _, s in scores["aplusk"]))
    cnn = next(line for line in result.stdout.splitlines() if "│ @cnnbrk" in line)
    assert [c.strip() for c in cnn.split("│")[5:7]] == ["", ""]
    assert "cnnbrk" not in scores
    # Every count after the learning phase (3 days, 24 readings: hourly, the 3 days decide)
    # carries the float field `unusual`, none before it.
    scored = [t for t, _ in scores["aplusk"]]
    counts = [t for t, _ in rows["aplusk"]]
    assert scored == [t for t in counts if t >= scored[0]]
    assert start + timedelta(days=3) <= scored[0] <= start + timedelta(days=3, hours=1)
    assert len(counts) - len(scored) >= 24
    assert field_type(influxd.url, "unusual") == "float"
    lead = f"{(fell - flag).total_seconds() / 3600:.0f}h"

    order = [
        at("▶ 14 Apr 2009 — Ashton Kutcher (@aplusk) challenges CNN (@cnnbrk) to a race"),
        at("at the current rate @aplusk reaches 1,000,000 in about"),
        at(f"▶ {up:%d %b %Y %H:%M} UTC — @aplusk passes 1,000,000 followers, 2h ahead of @cnnbrk"),
        at(f"alert [{up:%d %b %H:%M}] @aplusk on x crossed above 1,000,000 followers"),
        at(f"alert [{cnn_up:%d %b %H:%M}] @cnnbrk on x crossed above 1,000,000 followers"),
        at("▶ 17 Apr 2009 — Oprah Winfrey sends her first tweet live on her show"),
        at("▶ 27 Apr 2009 — the replay's (illustrative) Unfollow Day"),
        at(
            f"▶ {flag:%d %b %Y %H:%M} UTC — followerwatch flags an unusual drop: @aplusk is "
            f"losing {-rate:,}/h against a typical {typical:+,}/h (score {score:+.0f}), "
            f"{lead} before @aplusk falls below 1,000,000."
        ),
        at(f"alert [{flag:%d %b %H:%M}] @aplusk on x is losing {-rate:,}/h; typical lately is"),
        at("@aplusk on x lost"),
        at(f"▶ {down:%d %b %Y %H:%M} UTC — @aplusk falls back below 1,000,000 followers"),
        at(f"alert [{down:%d %b %H:%M}] @aplusk on x dropped below 1,000,000 followers"),
        at("@aplusk on x: the unusual change is over"),
        at("Summary (read back from InfluxDB)"),
    ]
    assert order == sorted(order)
    # The README quotes the unusual drop's story line and alert: they are this run's.
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    quoted = [line for line in readme.splitlines() if "followerwatch flags an unusual" in line]
    quoted += [line for line in readme.splitlines() if "alert [27 Apr 07:00]" in line]
    assert len(quoted) == 2 and all(" ".join(q.split()) in out for q in quoted), quoted
    # Every alert is told once: no second copy from another notifier or a retried delivery.
    assert out.count("on x crossed above 1,000,000 followers") == 2


def test_story_takes_the_crossings_from_the_rows() -> None:
    t = datetime(2009, 4, 16, 22, tzinfo=UTC)
    minutes = [t + timedelta(minutes=30 * i) for i in range(6)]
    aplusk = [990_000, 995_000, 999_999, MILLION, 1_002_000, 999_000]
    cnnbrk = [996_000, 1_000_001, 1_003_000, 1_004_000, 1_005_000, 1_006_000]
    # CNN wins here: the story says so, and by how much, because the rows say so.
    rows = {
        "aplusk": list(zip(minutes, aplusk, strict=True)),
        "cnnbrk": list(zip(minutes, cnnbrk, strict=True)),
    }
    texts = [(beat.time, beat.text) for beat in story(rows)]
    assert (
        minutes[1],
        "16 Apr 2009 22:30 UTC — @cnnbrk passes 1,000,000 followers, 1h ahead of @aplusk.",
    ) in texts
    assert (
        minutes[5],
        "17 Apr 2009 00:30 UTC — @aplusk falls back below 1,000,000 followers "
        "(from 1,002,000 on 17 Apr).",
    ) in texts
    assert [when for when, _ in texts] == sorted(when for when, _ in texts)


def test_the_unusual_drop_line_is_the_alerts_own() -> None:
    t = datetime(2009, 4, 27, 7, tzinfo=UTC)
    event = {
        "kind": "unusual_drop",
        "time": "2009-04-27T07:00:00Z",
        "account": "aplusk",
        "value": -1_444,
        "threshold": 29,
        "score": -7.01,
    }
    fall = {"aplusk": t + timedelta(hours=11, minutes=30)}
    beat = flagged(event, fall)
    assert beat is not None and beat.time == t
    assert beat.text == (
        "27 Apr 2009 07:00 UTC — followerwatch flags an unusual drop: @aplusk is losing "
        "1,444/h against a typical +29/h (score -7), 11h 30m before @aplusk falls below 1,000,000."
    )
    # No lead when the account never falls (or fell before the flag), no score when it has none.
    for later in ({}, {"aplusk": t - timedelta(hours=1)}):
        beat = flagged({**event, "score": None}, later)
        assert beat is not None and beat.text.endswith("against a typical +29/h.")
    # Any other alert, the unusual rule's end included, is told by its alert line alone.
    assert flagged({**event, "kind": "unusual_cleared"}, fall) is None
    assert flagged({**event, "kind": "dropped_below"}, fall) is None


def test_falls_are_the_first_fall_after_reaching_the_line() -> None:
    t = datetime(2009, 4, 16, tzinfo=UTC)
    hours = [t + timedelta(hours=i) for i in range(5)]
    rows = {
        "up_down": list(zip(hours, [999_000, MILLION, 999_999, MILLION, 998_000], strict=True)),
        "never_up": list(zip(hours, [900_000, 910_000, 905_000, 920_000, 930_000], strict=True)),
    }
    assert falls(rows) == {"up_down": hours[2]}
