"""Every query of every Grafana dashboard, expanded like Grafana 12 and run on a real influxd.

The database is filled by followerwatch itself (tests/grafana_scenario.py); expected values come
from the replay CSV, the fake GitHub's counts and followerwatch's own records of what it wrote.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from followerwatch.demo.influxd import TempInfluxd
from followerwatch.demo.replay import replay_file
from followerwatch.models import Account, Observation
from followerwatch.rules.base import Reading
from followerwatch.rules.unusual import Unusual
from followerwatch.sources.replay import read_replay
from grafana_scenario import (
    ALL,
    CYCLES,
    END,
    GRAFANA,
    OUTAGE_CYCLE,
    START,
    STEP,
    Grafana,
    Result,
    Scenario,
    Value,
    Variables,
    epoch_ms,
    escape_regex,
    format_interval,
    github_count,
    influx_query,
    regex_format,
    round_interval,
    run_scenario,
)

Key = tuple[str, str]
APLUSK: Key = ("x", "aplusk")
CNNBRK: Key = ("x", "cnnbrk")
USER1: Key = ("github", "user-001")
USER2: Key = ("github", "user-002")
MINUTE = 60_000


def load(name: str) -> dict[str, Any]:
    board: dict[str, Any] = json.loads((GRAFANA / "dashboards" / f"{name}.json").read_text())
    return board


def panel(board: dict[str, Any], pid: int) -> dict[str, Any]:
    return next(p for p in board["panels"] if p["id"] == pid)


@pytest.fixture(scope="module")
def scenario(influxd: TempInfluxd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    result = run_scenario(influxd.url, tmp_path_factory.mktemp("grafana-scenario"))
    yield result
    httpx.post(f"{influxd.url}/query", data={"q": f'DROP DATABASE "{result.database}"'})


def grafana(
    scenario: Scenario,
    start: datetime = START,
    end: datetime = END,
    max_data_points: int = 1000,
) -> Grafana:
    return Grafana(
        lambda q: influx_query(scenario.url, scenario.database, q),
        start,
        end,
        max_data_points=max_data_points,
    )


def run(
    g: Grafana, board: dict[str, Any], pid: int, chosen: dict[str, Value] | None = None
) -> dict[str, list[Result]]:
    return g.panel(panel(board, pid), g.resolve(board, chosen or {}))


def by_account(result: Result, column: str) -> dict[Key, Any]:
    """{(platform, account): the column's value} of a one-row-per-account table result."""
    out = {}
    for (platform, account), rows in result.by_tags("platform", "account").items():
        assert len(rows) == 1, (platform, account, rows)
        out[(platform, account)] = rows[0][column]
    return out


def in_range(scenario: Scenario, key: Key, start: datetime, end: datetime) -> list[tuple[int, int]]:
    return [(epoch_ms(t), v) for t, v in scenario.counts[key] if start <= t <= end]


def buckets(points: list[tuple[int, int]], every_ms: int) -> dict[int, int]:
    """GROUP BY time(every) with last(): bucket start → last value in it (fill(none))."""
    out: dict[int, int] = {}
    for t, v in sorted(points):
        out[t - t % every_ms] = v
    return out


def series_values(result: Result, column: str, *tags: str) -> dict[tuple[str, ...], dict[int, Any]]:
    """tags → {time: value} with nulls left out (what a graph plots)."""
    return {
        key: {row["time"]: row[column] for row in rows if row[column] is not None}
        for key, rows in result.by_tags(*tags).items()
    }


def csv_value_at(account: str, when: datetime) -> int:
    """The replay's last count at or before `when`, straight from the packaged CSV."""
    series = read_replay(replay_file(), "x")[account]
    return [v for t, v in series if t <= when][-1]


# ------------------------------------------------------------------------------------------------
# Grafana's macro expansion itself (the parts that decide what InfluxDB receives)
# ------------------------------------------------------------------------------------------------


def test_expansion_follows_grafana() -> None:
    # Grafana's own test cases for its InfluxDB datasource (interpolateQueryExpr).
    assert escape_regex("/special/path") == "\\/special\\/path"
    assert regex_format(["env", "env2", "env3"]) == "(env|env2|env3)"
    assert regex_format(["/special/path", "/some/other/path"]) == (
        "(\\/special\\/path|\\/some\\/other\\/path)"
    )
    assert regex_format(["only"]) == "only"
    assert escape_regex("a.b(c)*+?^$|[]{}\\") == "a\\.b\\(c\\)\\*\\+\\?\\^\\$\\|\\[\\]\\{\\}\\\\"
    # rangeutil.roundInterval and gtime.FormatInterval.
    assert [round_interval(ms) for ms in (5, 1_296_000, 10_800_000, 100_000_000)] == [
        1,
        1_200_000,
        10_800_000,
        86_400_000,
    ]
    assert [format_interval(ms) for ms in (1_200_000, 10_800_000, 86_400_000, 90_000, 500)] == [
        "20m",
        "3h",
        "1d",
        "1m",
        "500ms",
    ]
    g = Grafana(lambda q: Result([]), START, END)
    variables = Variables(
        {"platform": ALL, "account": ["a.b", "c"], "line": "1000000"},
        {"platform": ["github", "x"]},
    )
    query = (
        'SELECT last("followers") - $line FROM "followers" WHERE "platform" =~ /^$platform$/'
        ' AND "account" =~ /^$account$/ AND $timeFilter AND time <= ${__to}ms - 1h'
        " GROUP BY time($__interval)"
    )
    assert g.expand(query, variables) == (
        'SELECT last("followers") - 1000000 FROM "followers" WHERE "platform" =~ /^(github|x)$/'
        ' AND "account" =~ /^(a\\.b|c)$/ AND time >= 1239667200000ms and time <= 1240963200000ms'
        " AND time <= 1240963200000ms - 1h GROUP BY time(20m)"
    )


# ------------------------------------------------------------------------------------------------
# Every query returns data
# ------------------------------------------------------------------------------------------------

SELECTIONS: dict[str, list[dict[str, Value]]] = {
    "overview": [{}, {"platform": ["github"], "account": ALL}],
    "account": [
        {"platform": "x", "account": "aplusk"},
        {"platform": "github", "account": "user-001"},
    ],
    "race": [{"accounts": ["aplusk", "cnnbrk"], "leader": "aplusk"}],
    "service-health": [{}, {"platform": ["github"]}],
}


def test_every_query_of_every_dashboard_runs_and_returns_data(scenario: Scenario) -> None:
    """Each variable, panel target and annotation answers without error and with data."""
    expected: set[tuple[str, ...]] = set()
    answered: set[tuple[str, ...]] = set()
    for name, selections in SELECTIONS.items():
        board = load(name)
        expected |= {(name, "var", v["name"]) for v in board["templating"]["list"]}
        expected |= {(name, "anno", a["name"]) for a in board["annotations"]["list"]}
        expected |= {
            (name, str(p["id"]), t["refId"]) for p in board["panels"] for t in p["targets"]
        }
        for chosen in selections:
            g = grafana(scenario)
            variables = g.resolve(board, chosen)
            for var in board["templating"]["list"]:
                if var["type"] != "query" or variables.options[var["name"]]:
                    answered.add((name, "var", var["name"]))
            for p in board["panels"]:
                for ref, results in g.panel(p, variables).items():
                    if all(r.series and any(s["values"] for s in r.series) for r in results):
                        answered.add((name, str(p["id"]), ref))
            for annotation in board["annotations"]["list"]:
                if g.annotation(annotation, variables).series:
                    answered.add((name, "anno", annotation["name"]))
    assert expected - answered == set()


def test_variables_list_what_was_written(scenario: Scenario) -> None:
    g = grafana(scenario)
    overview = g.resolve(load("overview"), {})
    assert overview.options == {
        "platform": ["github", "x"],
        "account": ["aplusk", "cnnbrk", "user-001", "user-002"],  # ghost-user never had a count
    }
    assert g.resolve(load("overview"), {"platform": ["github"]}).options["account"] == [
        "user-001",
        "user-002",
    ]
    race = g.resolve(load("race"), {"accounts": ["aplusk", "user-001"]})
    assert race.options["leader"] == ["aplusk", "user-001"]
    assert race.values["line"] == "1000000"
    health = g.resolve(load("service-health"), {})
    assert health.options["platform"] == ["github", "x"]


# ------------------------------------------------------------------------------------------------
# Overview
# ------------------------------------------------------------------------------------------------


LOOKBACK = timedelta(days=7)  # how far before "1 h / 24 h / 7 d ago" a change looks for a count


def count_before(scenario: Scenario, key: Key, then: datetime) -> int | None:
    """The last count at or before `then`, within the change queries' look-back."""
    found = [v for t, v in scenario.counts[key] if then - LOOKBACK < t <= then]
    return found[-1] if found else None


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (START, END),
        (START, datetime(2009, 4, 27, 20, 30, tzinfo=UTC)),
        # A 24 h range: the changes still reach back 7 d (past the range).
        (END - timedelta(days=1), END),
        # Two days into the data: nothing is 7 d old, so that column is empty, not wrong.
        (START, START + timedelta(days=2)),
    ],
)
def test_overview_table_current_count_and_changes(
    scenario: Scenario, start: datetime, end: datetime
) -> None:
    g = grafana(scenario, start=start, end=end)
    res = run(g, load("overview"), 1)
    keys = [APLUSK, CNNBRK, USER1, USER2]
    current = {k: scenario.value_at(k, end, start) for k in keys}
    assert by_account(res["A"][0], "followers") == current
    for ref, hours, column in (
        ("B", 1, "change_1h"),
        ("C", 24, "change_24h"),
        ("D", 168, "change_7d"),
    ):
        then = end - timedelta(hours=hours)
        before = {k: count_before(scenario, k, then) for k in keys}
        expected = {k: current[k] - before[k] for k in keys if before[k] is not None}  # type: ignore[operator]
        assert by_account(res[ref][0], column) == expected, column
        assert (expected == {}) is (column == "change_7d" and end < START + timedelta(days=7))


def test_overview_24h_change_equals_the_replay(scenario: Scenario) -> None:
    """The 24 h change straight from the CSV and the fake's counts, not from what was recorded."""
    res = run(grafana(scenario), load("overview"), 1)
    change = by_account(res["C"][0], "change_24h")
    day_before = END - timedelta(hours=24)
    for account in ("aplusk", "cnnbrk"):
        assert change[("x", account)] == csv_value_at(account, END) - csv_value_at(
            account, day_before
        )
    assert change[APLUSK] == 993_377 - 991_303  # the CSV's 2009-04-28 23:00 and 00:00 rows
    # github polls every 6 h: the 24 h change is four polls, one follower each.
    assert change[USER1] == github_count(CYCLES - 1) - github_count(CYCLES - 5) == 4
    assert change[USER2] == 0


def test_overview_nearest_threshold_and_distance(scenario: Scenario) -> None:
    res = run(grafana(scenario), load("overview"), 1)["E"][0]
    rows = {k: v[0] for k, v in res.by_tags("platform", "account").items()}
    assert set(rows) == set(scenario.lines)  # user-002 has no lines, so no row
    for key, lines in scenario.lines.items():
        last = scenario.value_at(key, END)
        assert last is not None
        # Issue 18: the distance rides on the count; the line is the count minus it.
        candidates = {v: last - v for _, v in lines}
        nearest = min(abs(x) for x in candidates.values())
        row = rows[key]
        assert row["distance"] == candidates[row["nearest"]]
        assert abs(row["distance"]) == nearest
    assert rows[USER1]["nearest"] == 120 and rows[USER1]["distance"] == 40
    assert rows[CNNBRK]["nearest"] == 1_000_000 and rows[CNNBRK]["distance"] == 41_091
    assert rows[APLUSK]["nearest"] == 1_000_000


# user-001 gains one follower per 6 h poll: at END it has 160 and reaches its 250 line in 90 polls.
ETA_AT_END = (250 - github_count(CYCLES - 1)) * int(STEP.total_seconds())


def test_overview_eta_of_the_approaching_account(scenario: Scenario) -> None:
    res = run(grafana(scenario), load("overview"), 1)["F"][0]
    rows = {k: v[0] for k, v in res.by_tags("platform", "account").items()}
    # Only user-001 has an `approaching` rule; the others never get a projection.
    assert set(rows) == {USER1}
    assert ETA_AT_END == 1_944_000  # 22.5 days
    assert (rows[USER1]["eta_s"], rows[USER1]["line"], rows[USER1]["direction"]) == (
        ETA_AT_END,
        250,
        "above",
    )


@pytest.mark.parametrize(
    ("age", "expected"),
    [
        # The last poll (and projection) is 5 h 30 min before this range's end: too old for 1 h.
        ("1h", None),
        ("6h", (250 - github_count(CYCLES - 2)) * int(STEP.total_seconds())),
    ],
)
def test_overview_eta_ignores_projections_older_than_eta_age(
    scenario: Scenario, age: str, expected: int | None
) -> None:
    g = grafana(scenario, end=END - STEP + timedelta(hours=5, minutes=30))
    res = run(g, load("overview"), 1, {"eta_age": age})["F"][0]
    got = {k: v[0]["eta_s"] for k, v in res.by_tags("platform", "account").items()}
    assert got == ({} if expected is None else {USER1: expected})


def test_overview_frames_merge_on_platform_and_account(scenario: Scenario) -> None:
    """What the table's merge transformation needs: every frame keyed by platform+account,
    and no value column shared between two queries."""
    res = run(grafana(scenario), load("overview"), 1)
    columns: list[str] = []
    for ref, [result] in res.items():
        assert {tuple(sorted(s["tags"])) for s in result.series} == {("account", "platform")}, ref
        columns += [c for c in result.series[0]["columns"] if c != "time"]
    assert len(columns) == len(set(columns))


def test_overview_followers_graph(scenario: Scenario) -> None:
    g = grafana(scenario)
    res = run(g, load("overview"), 2)["A"][0]
    got = series_values(res, "last", "platform", "account")
    assert set(got) == {APLUSK, CNNBRK, USER1, USER2}
    for platform, account in got:
        key = (platform, account)
        assert got[key] == buckets(in_range(scenario, key, START, END), g.interval_ms)


def test_overview_top_gainers_and_losers(scenario: Scenario) -> None:
    board = load("overview")
    g = grafana(scenario)
    change = {
        k: scenario.value_at(k, END) - scenario.counts[k][0][1]  # type: ignore[operator]
        for k in (APLUSK, CNNBRK, USER1, USER2)
    }
    assert change[CNNBRK] == csv_value_at("cnnbrk", END) - 942_314
    for pid, reverse in ((3, True), (4, False)):
        rows = run(g, board, pid)["A"][0].rows()
        got = [((r["platform"], r["account"]), r["change"]) for r in rows]
        assert got == sorted(change.items(), key=lambda kv: kv[1], reverse=reverse)


def test_overview_filters_by_platform(scenario: Scenario) -> None:
    res = run(grafana(scenario), load("overview"), 1, {"platform": ["github"]})
    for results in res.values():
        assert {s["tags"]["platform"] for s in results[0].series} == {"github"}


# ------------------------------------------------------------------------------------------------
# Account
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", [APLUSK, USER1])
def test_account_followers_with_threshold_lines(scenario: Scenario, key: Key) -> None:
    g = grafana(scenario)
    res = run(g, load("account"), 1, {"platform": key[0], "account": key[1]})
    [followers] = series_values(res["A"][0], "followers").values()
    assert followers == buckets(in_range(scenario, key, START, END), g.interval_ms)
    lines = series_values(res["B"][0], "last", "rule")
    assert set(lines) == {(f"{d}:{v}",) for d, v in scenario.lines[key]}
    first = min(followers)
    last_bucket = epoch_ms(END) - epoch_ms(END) % g.interval_ms
    every_bucket = set(range(first, last_bucket + 1, g.interval_ms))
    for (rule,), points in lines.items():
        # fill(previous): a flat line at the threshold from the first observation to the end
        # (the query looks back 4 h before the range for a line point; none is older here).
        assert set(points) == every_bucket
        assert set(points.values()) == {int(rule.split(":")[1])}


@pytest.mark.parametrize("key", [APLUSK, USER1])
def test_account_lines_span_a_range_that_starts_between_line_points(
    scenario: Scenario, key: Key
) -> None:
    """A range starting just after a line point (written at most 4 h apart) still has every
    line across all of it: the query looks back 4 h before the range."""
    start = START + STEP * 30 + timedelta(minutes=1)
    end = start + timedelta(hours=5)
    g = grafana(scenario, start, end)
    res = run(g, load("account"), 1, {"platform": key[0], "account": key[1]})
    lines = series_values(res["B"][0], "last", "rule")
    assert set(lines) == {(f"{d}:{v}",) for d, v in scenario.lines[key]}
    first = epoch_ms(start) - epoch_ms(start) % g.interval_ms
    last_bucket = epoch_ms(end) - epoch_ms(end) % g.interval_ms
    for (rule,), points in lines.items():
        shown = {t: v for t, v in points.items() if t >= first}
        assert set(shown) == set(range(first, last_bucket + 1, g.interval_ms))
        assert set(shown.values()) == {int(rule.split(":")[1])}


@pytest.mark.parametrize(("pid", "hours"), [(2, 1), (3, 24)])
def test_account_net_change_bars(scenario: Scenario, pid: int, hours: int) -> None:
    res = run(grafana(scenario), load("account"), pid, {"platform": "x", "account": "aplusk"})
    [got] = series_values(res["A"][0], "net change").values()
    last = sorted(buckets(in_range(scenario, APLUSK, START, END), hours * 60 * MINUTE).items())
    expected = {t: v - prev for (_, prev), (t, v) in itertools.pairwise(last)}
    assert got == expected
    if hours == 24:  # "Unfollow Day": the day @aplusk lost most
        assert min(got.values()) == got[epoch_ms(datetime(2009, 4, 27, tzinfo=UTC))] < -30_000


def test_account_following_and_posts(scenario: Scenario) -> None:
    res = run(grafana(scenario), load("account"), 4, {"platform": "github", "account": "user-002"})
    rows = [r for r in res["A"][0].rows() if r["following"] is not None]
    # The fake's user-002 follows 2 accounts and has 2 repositories (its `posts`).
    assert len(rows) == CYCLES - 1 and {(r["following"], r["posts"]) for r in rows} == {(2, 2)}
    replay_only = run(grafana(scenario), load("account"), 4, {"platform": "x", "account": "aplusk"})
    assert replay_only["A"][0].series == []  # the replay has no following/posts: no line at all


def annotation(board: dict[str, Any], name: str) -> dict[str, Any]:
    return next(a for a in board["annotations"]["list"] if a["name"] == name)


@pytest.mark.parametrize("key", [APLUSK, CNNBRK, USER1])
def test_account_annotations_are_the_scenarios_events(scenario: Scenario, key: Key) -> None:
    board = load("account")
    g = grafana(scenario)
    variables = g.resolve(board, {"platform": key[0], "account": key[1]})
    # The unusual rule's events are the other annotation's (see below): none is drawn twice.
    threshold = annotation(board, "Threshold events")
    rows = g.annotation(threshold, variables).rows()
    expected = [
        (epoch_ms(e.time), e.message, str(e.kind), e.rule, e.value, e.threshold)
        for e in scenario.events
        if (e.platform, e.account) == key and e.rule != "unusual"
    ]
    assert [
        (r["time"], r["message"], r["kind"], r["rule"], r["value"], r["threshold"]) for r in rows
    ] == expected
    assert expected  # every one of these accounts had at least one event
    target = threshold["target"]
    assert target["textColumn"] in rows[0] and all(
        c in rows[0] for c in target["tagsColumn"].split(",")
    )
    # The table lists every event, the unusual rule's too, newest first.
    everything = sorted(
        [(t, k) for t, _, k, *_ in expected]
        + [
            (epoch_ms(e.time), str(e.kind))
            for e in scenario.unusual_events
            if (e.platform, e.account) == key
        ]
    )
    events = run(g, board, 5, {"platform": key[0], "account": key[1]})["A"][0].rows()
    times = [r["time"] for r in events]
    assert times == sorted(times, reverse=True)
    assert sorted((r["time"], r["kind"]) for r in events) == everything


def test_account_annotations_know_the_2009_story(scenario: Scenario) -> None:
    board = load("account")
    g = grafana(scenario)
    variables = g.resolve(board, {"platform": "x", "account": "aplusk"})
    rows = g.annotation(annotation(board, "Threshold events"), variables).rows()
    assert [(r["time"], r["kind"], r["value"]) for r in rows] == [
        (epoch_ms(datetime(2009, 4, 17, 6, tzinfo=UTC)), "crossed_above", 1_000_448),
        (epoch_ms(datetime(2009, 4, 27, 18, tzinfo=UTC)), "dropped_below", 999_652),
    ]


@pytest.mark.parametrize("max_data_points", [1000, 40])  # $__interval 20m and 12h
def test_account_unusual_score_is_the_rules_score_of_each_count(
    scenario: Scenario, max_data_points: int
) -> None:
    g = grafana(scenario, max_data_points=max_data_points)
    res = run(g, load("account"), 6, {"platform": "x", "account": "aplusk"})
    [got] = series_values(res["A"][0], "unusual score").values()
    # last() per bucket, like the count; the rule scores a count once it has learned 3 days.
    expected: dict[int, float] = {}
    for t, score in sorted(scenario.scores[APLUSK]):
        expected[epoch_ms(t) - epoch_ms(t) % g.interval_ms] = score
    assert got == expected
    assert len(expected) > 10 and min(got.values()) < -5  # Unfollow Day is far below zero
    # What the pipeline wrote is the rule's own score of each count, read in order.
    rule, state, scored = Unusual(), None, []
    for t, count in scenario.counts[APLUSK]:
        obs = Observation(Account("x", "aplusk", "aplusk"), t, count)
        state, _ = rule.evaluate(state, Reading(obs.account, t, obs, None, None))
        if (score := rule.score(state)) is not None:
            scored.append((t, score))
    assert scenario.scores[APLUSK] == scored
    first_count = min(t for t, _ in scenario.counts[APLUSK])
    assert min(t for t, _ in scenario.scores[APLUSK]) >= first_count + timedelta(days=3)


def test_account_unusual_score_is_empty_without_scores(scenario: Scenario) -> None:
    # GitHub's accounts were never scored: no line at all (nothing drawn at 0).
    res = run(grafana(scenario), load("account"), 6, {"platform": "github", "account": "user-001"})
    assert res["A"][0].series == []


@pytest.mark.parametrize("key", [APLUSK, CNNBRK, USER1])
def test_account_unusual_annotations_are_the_rules_events(scenario: Scenario, key: Key) -> None:
    board = load("account")
    g = grafana(scenario)
    variables = g.resolve(board, {"platform": key[0], "account": key[1]})
    unusual = annotation(board, "Unusual changes")
    rows = g.annotation(unusual, variables).rows()
    expected = [
        (epoch_ms(e.time), e.message, str(e.kind), e.rule, e.value, e.threshold)
        for e in scenario.unusual_events
        if (e.platform, e.account) == key
    ]
    assert [
        (r["time"], r["message"], r["kind"], r["rule"], r["value"], r["threshold"]) for r in rows
    ] == expected
    if key == APLUSK:
        # Unfollow Day fires an unusual drop, its message giving the score; a fire and its
        # resolution alternate (how often it fires is the detector's business, not the board's).
        kinds = [k for _, _, k, *_ in expected]
        assert kinds[::2] == ["unusual_drop"] * len(kinds[::2])
        assert kinds[1::2] == ["unusual_cleared"] * len(kinds[1::2])
        assert "(score -" in expected[0][1]
        first = datetime.fromtimestamp(expected[0][0] / 1000, UTC)
        assert first.date() == datetime(2009, 4, 27).date()
        target = unusual["target"]
        assert target["textColumn"] in rows[0] and all(
            c in rows[0] for c in target["tagsColumn"].split(",")
        )
    else:
        # @cnnbrk has the rule on too and its steady climb never fires it; user-001 has it off.
        assert expected == []
        if key == CNNBRK:
            assert len(scenario.scores[CNNBRK]) > 10


# ------------------------------------------------------------------------------------------------
# Race
# ------------------------------------------------------------------------------------------------

RACE: dict[str, Value] = {"accounts": ["aplusk", "cnnbrk"], "leader": "aplusk"}


@pytest.mark.parametrize("max_data_points", [1000, 120])  # $__interval 20m and 3h
def test_race_gap_is_the_difference_of_the_two_counts(
    scenario: Scenario, max_data_points: int
) -> None:
    g = grafana(scenario, max_data_points=max_data_points)
    [own, other] = run(g, load("race"), 4, dict(RACE))["A"]  # repeated for aplusk, then cnnbrk
    leader = buckets(in_range(scenario, APLUSK, START, END), g.interval_ms)
    rival = buckets(in_range(scenario, CNNBRK, START, END), g.interval_ms)
    [gap] = series_values(other, "gap").values()
    assert gap == {t: leader[t] - rival[t] for t in leader.keys() & rival.keys()}
    assert set(next(iter(series_values(own, "gap").values())).values()) == {0}
    # CNN led at the start; @aplusk passed it before either reached 1,000,000.
    assert gap[min(gap)] < 0 < gap[epoch_ms(datetime(2009, 4, 17, 6, tzinfo=UTC))]


@pytest.mark.parametrize("line", ["1000000", "1020000"])
def test_race_line_distance_and_first_to_reach_it(scenario: Scenario, line: str) -> None:
    board = load("race")
    g = grafana(scenario)
    chosen: dict[str, Value] = {**RACE, "line": line}
    followers = run(g, board, 1, chosen)
    [line_series] = series_values(followers["B"][0], "line").values()
    assert set(line_series.values()) == {int(line)}
    distance = series_values(run(g, board, 2, chosen)["A"][0], "distance", "account")
    first = run(g, board, 3, chosen)["A"][0].by_tags("account")
    for key in (APLUSK, CNNBRK):
        counts = buckets(in_range(scenario, key, START, END), g.interval_ms)
        assert distance[(key[1],)] == {t: v - int(line) for t, v in counts.items()}
        reached = [(epoch_ms(t), v) for t, v in scenario.counts[key] if v >= int(line)]
        [row] = first[(key[1],)]
        assert (row["time"], row["followers"]) == reached[0]
    if line == "1000000":  # @aplusk first, two hours before CNN
        assert first[("aplusk",)][0]["time"] + 2 * 60 * MINUTE == first[("cnnbrk",)][0]["time"]


# ------------------------------------------------------------------------------------------------
# Service health
# ------------------------------------------------------------------------------------------------


def test_health_polls_by_platform_and_outcome(scenario: Scenario) -> None:
    board = load("service-health")
    g = grafana(scenario)
    polls = run(g, board, 1)["A"][0].by_tags("platform", "outcome")
    got = {k: sum(r["polls"] for r in rows) for k, rows in polls.items()}
    expected: dict[tuple[str, ...], int] = {}
    for _, platform, outcome in scenario.polls:
        expected[(platform, outcome)] = expected.get((platform, outcome), 0) + 1
    assert got == expected == {("x", "ok"): 61, ("github", "partial"): 60, ("github", "error"): 1}
    totals = {
        k: rows[0] for k, rows in run(g, board, 6)["A"][0].by_tags("platform", "outcome").items()
    }
    assert {k: (r["polls"], r["observations"], r["failures"]) for k, r in totals.items()} == {
        ("x", "ok"): (61, 720, 0),  # every row of the replay CSV
        ("github", "partial"): (60, 120, 60),  # ghost-user fails every poll
        ("github", "error"): (1, 0, 0),
    }
    assert totals[("github", "partial")]["requests"] >= 60


def test_health_failures_latency_headroom(scenario: Scenario) -> None:
    board = load("service-health")
    g = grafana(scenario)
    failures = run(g, board, 2)
    failed = series_values(failures["A"][0], "accounts failed", "platform")
    assert sum(failed[("github",)].values()) == 60 and set(failed[("x",)].values()) == {0}
    whole = series_values(failures["B"][0], "polls failed", "platform")
    outage = epoch_ms(START + STEP * OUTAGE_CYCLE)
    assert whole == {("github",): {outage - outage % g.interval_ms: 1}}
    latency = run(g, board, 3)["A"][0].by_tags("platform")
    assert set(latency) == {("github",), ("x",)}
    for rows in latency.values():
        assert all(0 <= r["mean"] <= r["max"] for r in rows if r["mean"] is not None)
    headroom = series_values(run(g, board, 4)["A"][0], "remaining", "platform")
    assert set(headroom) == {("github",)}  # the replay has no rate limit
    assert all(0 < v <= 5000 for v in headroom[("github",)].values())


def test_health_last_successful_poll_per_account(scenario: Scenario) -> None:
    board = load("service-health")
    res = run(grafana(scenario), board, 5)["A"][0]
    got = {k: rows[0]["time"] for k, rows in res.by_tags("platform", "account").items()}
    assert got == {k: epoch_ms(series[-1][0]) for k, series in scenario.counts.items()}
    assert got[USER1] == epoch_ms(END) and got[APLUSK] == epoch_ms(END - timedelta(hours=1))
    only_github = run(grafana(scenario), board, 5, {"platform": ["github"]})["A"][0]
    assert {s["tags"]["platform"] for s in only_github.series} == {"github"}


def test_scenario_wrote_what_it_says(scenario: Scenario) -> None:
    """Guards the fixtures the assertions above rely on."""
    assert len(scenario.counts[APLUSK]) == len(scenario.counts[CNNBRK]) == 360
    assert [v for _, v in scenario.counts[USER1]] == [
        github_count(c) for c in range(CYCLES) if c != OUTAGE_CYCLE
    ]


def test_health_queues_show_the_spool_and_the_outbox(scenario: Scenario) -> None:
    board = load("service-health")
    result = run(grafana(scenario), board, 7)["A"][0]
    [series] = result.series
    assert series["columns"] == ["time", "points waiting", "alerts waiting"]
    rows = [r for r in series["values"] if r[1] is not None]
    assert rows, "the writer records its ledger while it writes"
    assert all(r[1] >= 0 and r[2] >= 0 for r in rows)
