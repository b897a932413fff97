"""For the Grafana tests: a real followerwatch run into a real influxd, and Grafana's macros.

The scenario runs followerwatch itself (App, collectors, rules, writer) on a ManualClock that
starts at the packaged April 2009 replay and moves six hours per poll cycle:

- x: the replay (@aplusk and @cnnbrk, hourly counts, 15 days), thresholds at 1,000,000;
- github: the local fake GitHub API; user-001 gains one follower per poll and crosses 120
  (its `approaching` rule projects when it will reach 250), user-002 stays at 114, ghost-user
  does not exist (every poll is `partial`), and one poll answers 503 (outcome `error`).

`followerwatch_thresholds` (and the `distance` field of `followers`) is written by the pipeline
itself: the lines at the first poll and again whenever 4 h have passed, which with 6-hour polls
is every poll; the scenario only records what the writer is given.

The x accounts have the unusual rule on (`unusual = true`): the pipeline itself writes its score
of each count (the float field `unusual` on that same `followers` point) and its events, and the
scenario records the scores the writer is given: @aplusk's Unfollow Day fires and resolves.

`Grafana` expands a dashboard's queries like Grafana 12 does before InfluxDB sees them:
template variables in the frontend (regex-escaped, multi values as `(a|b)`, "All" as every
option), then `$timeFilter` / `$__interval` in the InfluxDB datasource's backend.
"""

from __future__ import annotations

import asyncio
import atexit
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from pytest_httpserver import HTTPServer

from fakes.fake_github import FakeGitHub, make_user
from followerwatch.clock import ManualClock
from followerwatch.config.settings import load_config
from followerwatch.demo.replay import replay_file
from followerwatch.models import Event, Observation, Point
from followerwatch.service.app import App
from followerwatch.store.thresholds import Lines, threshold_lines

ROOT = Path(__file__).resolve().parent.parent
GRAFANA = ROOT / "grafana"

START = datetime(2009, 4, 14, tzinfo=UTC)
STEP = timedelta(hours=6)
CYCLES = 61  # 2009-04-14T00:00 .. 2009-04-29T00:00, the replay's 15 days plus its last hours
END = START + STEP * (CYCLES - 1)
OUTAGE_CYCLE = 20  # the fake GitHub answers 503 to this cycle's poll
GITHUB_BASE = 100  # user-001's count at cycle 0; +1 per cycle

WATCH: list[dict[str, Any]] = [
    {
        "platform": "x",
        "handle": "aplusk",
        "below": 1_000_000,
        "above": 1_000_000,
        "hysteresis": 1_000,
        "labels": {"story": "unfollow-day"},
        "unusual": True,
    },
    {
        "platform": "x",
        "handle": "cnnbrk",
        "above": 1_000_000,
        "hysteresis": 1_000,
        "unusual": True,
    },
    # `approaching` writes followerwatch_projections; a 1 h horizon never fires at 1 a poll.
    {
        "platform": "github",
        "handle": "user-001",
        "above": [120, 250],
        "below": [105, 100],
        "approaching": "1h",
    },
    {"platform": "github", "handle": "user-002"},
    {"platform": "github", "handle": "ghost-user"},
]

Series = list[tuple[datetime, int]]


@dataclass
class Scenario:
    """What the run wrote, and what it knows independently of InfluxDB."""

    url: str
    database: str
    counts: dict[tuple[str, str], Series]  # (platform, account) → every stored count
    events: list[Event]  # as followerwatch recorded them
    polls: list[tuple[datetime, str, str]]  # (time, platform, outcome) of every poll
    lines: dict[tuple[str, str], tuple[tuple[str, int], ...]]
    # The unusual rule's score of each count it scored, as the writer was given it.
    scores: dict[tuple[str, str], list[tuple[datetime, float]]] = field(default_factory=dict)

    @property
    def unusual_events(self) -> list[Event]:
        """The unusual rule's events among `events`."""
        return [e for e in self.events if e.rule == "unusual"]

    def value_at(self, key: tuple[str, str], when: datetime, since: datetime = START) -> int | None:
        """The last count at or before `when` and not before `since` (a dashboard's range)."""
        before = [v for t, v in self.counts[key] if since <= t <= when]
        return before[-1] if before else None


def github_count(cycle: int) -> int:
    return GITHUB_BASE + cycle


def run_scenario(influx_url: str, data_dir: Path) -> Scenario:
    """Create a database, run followerwatch over the scenario, return what it wrote."""
    database = f"grafana_{uuid.uuid4().hex[:10]}"
    httpx.post(
        f"{influx_url}/query", data={"q": f'CREATE DATABASE "{database}"'}, timeout=10
    ).raise_for_status()
    server = HTTPServer(host="127.0.0.1")
    server.start()
    try:
        return asyncio.run(_run(influx_url, database, data_dir, server))
    finally:
        server.clear()
        server.stop()


async def _run(influx_url: str, database: str, data_dir: Path, server: HTTPServer) -> Scenario:
    clock = ManualClock(START)
    github = FakeGitHub(server, clock)
    github.add(make_user(1), make_user(2))
    config = load_config(
        None,
        {
            "service": {"data_dir": str(data_dir)},
            "influxdb": {"url": influx_url, "database": database},
            "platforms": {
                # speed 1: replay time runs with the ManualClock, which starts at the replay.
                "x": {"interval": "6h", "replay": {"file": str(replay_file()), "speed": 1.0}},
                "github": {"interval": "6h", "token": github.token, "base_url": github.base_url},
            },
            "notifiers": [{"type": "log"}],
            "watch": WATCH,
        },
    )
    lines = threshold_lines(config)
    counts: dict[tuple[str, str], Series] = {}
    scores: dict[tuple[str, str], list[tuple[datetime, float]]] = {}
    polls: list[tuple[datetime, str, str]] = []
    async with App(config, clock=clock) as app:
        _record_writes(app, counts, polls, scores)
        for cycle in range(CYCLES):
            github.users["user-001"]["followers"] = github_count(cycle)
            if cycle == OUTAGE_CYCLE:
                github.serve(503, {"message": "Service Unavailable"})
            for group in app.groups:
                await app.poll_group(group)
            clock.advance(STEP.total_seconds())
        events = [event for event, _ in app.state.events.recent(limit=10_000)]
    for series in (*counts.values(), *scores.values()):
        series.sort()
    return Scenario(influx_url, database, counts, events, polls, lines, scores)


def _record_writes(
    app: App,
    counts: dict[tuple[str, str], Series],
    polls: list[tuple[datetime, str, str]],
    scores: dict[tuple[str, str], list[tuple[datetime, float]]],
) -> None:
    """Record every count, unusual score and poll outcome the writer is given, then write them."""
    write = app.writer.write

    async def recording_write(
        points: Sequence[Point],
        observations: Sequence[Observation] = (),
        thresholds: Lines | None = None,
    ) -> None:
        # The pipeline hands the writer PollPoints: its observations ride along with the points.
        for obs in getattr(points, "observations", observations):
            counts.setdefault(obs.account.key, []).append((obs.time, obs.followers))
        for point in points:
            tags = dict(point.tags)
            if point.measurement == "followerwatch_polls":
                polls.append((point.time, tags["platform"], tags["outcome"]))
            elif point.measurement == "followers":
                score = dict(point.fields).get("unusual")
                if score is not None:
                    assert isinstance(score, float), point  # a float field, never an integer
                    key = (tags["platform"], tags["account"])
                    scores.setdefault(key, []).append((point.time, score))
        await write(points)

    app.writer.write = recording_write  # type: ignore[method-assign]


# ------------------------------------------------------------------------------------------------
# InfluxDB, queried the way Grafana's backend queries it (POST /query, epoch=ms)
# ------------------------------------------------------------------------------------------------


@dataclass
class Result:
    """One statement's series: name, tags, columns, values (time in epoch ms)."""

    series: list[dict[str, Any]]

    def rows(self) -> list[dict[str, Any]]:
        """Every row as {column: value} plus the series' tags."""
        out = []
        for s in self.series:
            for values in s["values"]:
                out.append({**s.get("tags", {}), **dict(zip(s["columns"], values, strict=True))})
        return out

    def by_tags(self, *keys: str) -> dict[tuple[str, ...], list[dict[str, Any]]]:
        """Rows grouped by the series' tag values."""
        out: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for s in self.series:
            tags = s.get("tags", {})
            rows = [dict(zip(s["columns"], v, strict=True)) for v in s["values"]]
            out.setdefault(tuple(tags.get(k, "") for k in keys), []).extend(rows)
        return out


class InfluxError(AssertionError):
    """InfluxDB answered a statement with an error."""


_CLIENT = httpx.Client(timeout=10)
atexit.register(_CLIENT.close)


def influx_query(url: str, database: str, influxql: str) -> Result:
    """Run one InfluxQL statement; an error in the answer fails the test with the query."""
    response = _CLIENT.post(
        f"{url}/query",
        params={"db": database, "epoch": "ms"},
        data={"q": influxql},
        timeout=10,
    )
    body = response.json()
    if response.status_code != 200 or "error" in body:
        raise InfluxError(f"{influxql}\n→ HTTP {response.status_code}: {body}")
    results = body.get("results") or [{}]
    if len(results) != 1:
        raise InfluxError(f"{influxql}\n→ {len(results)} statements, expected one")
    if "error" in results[0]:
        raise InfluxError(f"{influxql}\n→ {results[0]['error']}")
    return Result(results[0].get("series") or [])


# ------------------------------------------------------------------------------------------------
# Grafana's macros
# ------------------------------------------------------------------------------------------------

# @grafana/data escapeRegex: what Grafana's InfluxDB datasource applies to variable values.
_REGEX_SPECIAL = re.compile(r"[\\^$*+?.()|\[\]{}/]")
# TemplateSrv's variable syntax: $name, [[name]] / [[name:fmt]], ${name} / ${name:fmt}.
_VARIABLE = re.compile(
    r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.([^:^\}]+))?(?::([^\}]+))?\}"
)
ALL = "$__all"


def escape_regex(value: str) -> str:
    """Grafana's escapeRegex()."""
    return _REGEX_SPECIAL.sub(lambda m: "\\" + m.group(0), value)


def regex_format(value: str | list[str]) -> str:
    """Grafana's `regex` formatter: escaped, several values as a group of alternatives."""
    if isinstance(value, str):
        return escape_regex(value)
    escaped = [escape_regex(v) for v in value]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def round_interval(ms: float) -> int:
    """@grafana/data rangeutil.roundInterval."""
    ladder = [
        (10, 1),
        (15, 10),
        (35, 20),
        (75, 50),
        (150, 100),
        (350, 200),
        (750, 500),
        (1_500, 1_000),
        (3_500, 2_000),
        (7_500, 5_000),
        (12_500, 10_000),
        (17_500, 15_000),
        (25_000, 20_000),
        (45_000, 30_000),
        (90_000, 60_000),
        (210_000, 120_000),
        (450_000, 300_000),
        (750_000, 600_000),
        (1_050_000, 900_000),
        (1_500_000, 1_200_000),
        (2_700_000, 1_800_000),
        (5_400_000, 3_600_000),
        (9_000_000, 7_200_000),
        (16_200_000, 10_800_000),
        (32_400_000, 21_600_000),
        (86_400_000, 43_200_000),
        (604_800_000, 86_400_000),
        (1_814_400_000, 604_800_000),
        (3_628_800_000, 2_592_000_000),
    ]
    for limit, rounded in ladder:
        if ms < limit:
            return rounded
    return 31_536_000_000


def format_interval(ms: int) -> str:
    """grafana-plugin-sdk-go gtime.FormatInterval: the largest whole unit."""
    for unit, size in (("y", 31_536_000_000), ("d", 86_400_000), ("h", 3_600_000)):
        if ms >= size:
            return f"{ms // size}{unit}"
    for unit, size in (("m", 60_000), ("s", 1_000)):
        if ms >= size:
            return f"{ms // size}{unit}"
    return f"{max(ms, 1)}ms"


def epoch_ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


Value = str | list[str]


@dataclass
class Variables:
    """Resolved template variables: current values and, for query variables, their options."""

    values: dict[str, Value] = field(default_factory=dict)
    options: dict[str, list[str]] = field(default_factory=dict)

    def scoped(self, name: str, value: str) -> Variables:
        """A copy with one variable set to one value (a repeated panel's scope)."""
        return Variables({**self.values, name: value}, self.options)


class Grafana:
    """A dashboard's queries as Grafana 12 would send them to InfluxDB, run on a real server."""

    def __init__(
        self,
        run: Callable[[str], Result],
        start: datetime,
        end: datetime,
        *,
        max_data_points: int = 1000,
    ) -> None:
        self.run = run
        self.start = start
        self.end = end
        self.max_data_points = max_data_points
        self.sent: list[str] = []

    @property
    def interval_ms(self) -> int:
        """The frontend's calculateInterval(range, maxDataPoints) (no min interval is set)."""
        span = epoch_ms(self.end) - epoch_ms(self.start)
        return round_interval(span / self.max_data_points)

    @property
    def interval(self) -> str:
        return format_interval(self.interval_ms)

    def interpolate(self, text: str, variables: Variables) -> str:
        """The frontend: template variables and $__from/$__to; the rest stays for the backend."""

        def replace(match: re.Match[str]) -> str:
            name = match.group(1) or match.group(2) or match.group(4)
            if name == "__from":
                return str(epoch_ms(self.start))
            if name == "__to":
                return str(epoch_ms(self.end))
            if name not in variables.values:
                return match.group(0)  # $timeFilter, $__interval: the backend's
            value = variables.values[name]
            if value == ALL or value == [ALL]:
                value = variables.options[name]
            return regex_format(value)

        return _VARIABLE.sub(replace, text)

    def backend(self, text: str) -> str:
        """The InfluxDB datasource backend (models/query.go Build): time filter and intervals."""
        time_filter = f"time >= {epoch_ms(self.start)}ms and time <= {epoch_ms(self.end)}ms"
        text = text.replace("$timeFilter", time_filter)
        text = text.replace("$interval", self.interval)
        text = text.replace("$__interval_ms", str(self.interval_ms))
        return text.replace("$__interval", self.interval)

    def expand(self, query: str, variables: Variables) -> str:
        return self.backend(self.interpolate(query, variables))

    def query(self, query: str, variables: Variables) -> Result:
        """Expand and run one query."""
        influxql = self.expand(query, variables)
        self.sent.append(influxql)
        return self.run(influxql)

    def resolve(self, dashboard: Mapping[str, Any], chosen: Mapping[str, Value]) -> Variables:
        """Refresh the dashboard's variables in order, as Grafana does on load.

        A query variable's options come from running its query with the variables before it;
        its value is `chosen[name]`, else its saved `current` ("All" stays "All"), else (a
        single-value variable whose saved value is not an option) the first option.
        """
        out = Variables()
        for var in dashboard["templating"]["list"]:
            name = var["name"]
            if var["type"] == "query":
                result = self.query(var["query"], out)
                options = sorted({str(row["value"]) for row in result.rows()})
                out.options[name] = options
            else:
                options = [o["value"] for o in var.get("options", [])]
            value: Value
            if name in chosen:
                value = chosen[name]
            else:
                saved = var.get("current", {}).get("value")
                if saved in (ALL, [ALL]):
                    value = ALL
                elif saved in options or (isinstance(saved, list) and saved):
                    value = saved
                else:
                    value = options[0]
            out.values[name] = value
        return out

    def panel(self, panel: Mapping[str, Any], variables: Variables) -> dict[str, list[Result]]:
        """Run every target of a panel: refId → results (one per repeat of a repeated panel)."""
        scopes = [variables]
        repeat = panel.get("repeat")
        if repeat:
            value = variables.values[repeat]
            if value in (ALL, [ALL]):
                value = variables.options[repeat]
            values = [value] if isinstance(value, str) else value
            scopes = [variables.scoped(repeat, v) for v in values]
        out: dict[str, list[Result]] = {}
        for scope in scopes:
            for target in panel["targets"]:
                out.setdefault(target["refId"], []).append(self.query(target["query"], scope))
        return out

    def annotation(self, annotation: Mapping[str, Any], variables: Variables) -> Result:
        """An InfluxQL annotation query (interpolated with the `regex` format, then the backend)."""
        return self.query(annotation["target"]["query"], variables)
