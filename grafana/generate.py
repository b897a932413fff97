"""Generate grafana/dashboards/*.json: `python grafana/generate.py` (`--check`: fail if stale).

The dashboards are plain Grafana JSON (schemaVersion 41, Grafana 12) built from the helpers below,
so every panel shares one datasource reference, one filter syntax and one layout grid. The JSON
is committed; tests/test_grafana_structure.py proves that regenerating it changes nothing and
tests/test_grafana_queries.py runs every query on a real InfluxDB.

Queries are InfluxQL only (1.x, 2.x through DBRP mappings, 3 Core), with `$timeFilter`,
`$__interval` and regex-form variables (`"account" =~ /^$account$/`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent
DASHBOARD_DIR = ROOT / "dashboards"

DATASOURCE_UID = "followerwatch-influxdb"
DS = {"type": "influxdb", "uid": DATASOURCE_UID}
SCHEMA_VERSION = 41
TAGS = ["followerwatch"]

Json = dict[str, Any]

# ------------------------------------------------------------------------------------------------
# Query fragments
# ------------------------------------------------------------------------------------------------

PLATFORM = '"platform" =~ /^$platform$/'
ACCOUNT = '"account" =~ /^$account$/'
ACCOUNTS = '"account" =~ /^$accounts$/'
WHERE = f"{PLATFORM} AND {ACCOUNT} AND $timeFilter"
RACE_WHERE = f"{PLATFORM} AND {ACCOUNTS} AND $timeFilter"
BY_ACCOUNT = '"platform", "account"'


CHANGE_LOOKBACK = "7d"


def change_query(window: str, name: str) -> str:
    """The count at the range's end minus the last count at or before `window` earlier.

    Two subqueries over the same measurement are summed per account (InfluxQL has no join).
    The earlier count is looked for in the CHANGE_LOOKBACK before `window` ago, not in the
    dashboard's range, so the 7 d column works on a 24 h range too; `n = 2` drops accounts
    without such a count, which would otherwise show their whole count as the change.
    """
    now = f'SELECT last("followers") AS "x" FROM "followers" WHERE {WHERE} GROUP BY {BY_ACCOUNT}'
    then = (
        f'SELECT -1 * last("followers") AS "x" FROM "followers" WHERE {PLATFORM} AND {ACCOUNT}'
        f" AND time <= ${{__to}}ms - {window} AND time > ${{__to}}ms - {window} - {CHANGE_LOOKBACK}"
        f" GROUP BY {BY_ACCOUNT}"
    )
    return (
        f'SELECT "change" AS "{name}" FROM (SELECT sum("x") AS "change", count("x") AS "n"'
        f" FROM ({now}), ({then}) GROUP BY {BY_ACCOUNT})"
        f' WHERE "n" = 2 GROUP BY {BY_ACCOUNT}'
    )


def range_change(selector: str) -> str:
    """top()/bottom() of each account's change over the whole range (last minus first)."""
    inner = (
        f'SELECT last("followers") - first("followers") AS "change" FROM "followers"'
        f" WHERE {WHERE} GROUP BY {BY_ACCOUNT}"
    )
    return f'SELECT {selector}("change", "platform", "account", 10) AS "change" FROM ({inner})'


# Each count of an account with lines carries `distance`, to its nearest line (followers −
# line); the count at the last distance in the range gives that line back.
NEAREST_THRESHOLD = (
    'SELECT "followers" - "distance" AS "nearest", "distance" FROM '
    '(SELECT last("distance") AS "distance", "followers"'
    f' FROM "followers" WHERE {WHERE} GROUP BY {BY_ACCOUNT})'
    f" GROUP BY {BY_ACCOUNT}"
)

# followerwatch writes each account's lines at start-up, when they change and at least every
# LINE_REFRESH (store/thresholds.py); looking back that far before the range finds every line,
# and fill(previous) carries it across the range.
LINE_REFRESH = "4h"
LINES = (
    f'SELECT last("value") FROM "followerwatch_thresholds" WHERE {PLATFORM} AND {ACCOUNT}'
    f" AND time >= ${{__from}}ms - {LINE_REFRESH} AND time <= ${{__to}}ms"
    ' GROUP BY time($__interval), "rule" fill(previous)'
)

# The projection is written only while the trend points toward a line, so the last one in the
# range can be stale (the line crossed since, or the trend turned): only recent ones count.
ETA_AGE = "eta_age"
PROJECTION_ETA = (
    'SELECT last("eta_s") AS "eta_s", "line", "direction" FROM "followerwatch_projections"'
    f" WHERE {WHERE} AND time > ${{__to}}ms - ${ETA_AGE} GROUP BY {BY_ACCOUNT}"
)

RACE_GAP = (
    'SELECT "gap" FROM (SELECT sum("x") AS "gap", count("x") AS "n" FROM '
    '(SELECT last("followers") AS "x" FROM "followers" WHERE '
    f'{PLATFORM} AND "account" =~ /^$leader$/ AND $timeFilter'
    " GROUP BY time($__interval) fill(none)), "
    '(SELECT -1 * last("followers") AS "x" FROM "followers" WHERE '
    f"{RACE_WHERE} GROUP BY time($__interval) fill(none))"
    ' GROUP BY time($__interval)) WHERE "n" = 2 AND $timeFilter'
)

POLLS_WHERE = f"{PLATFORM} AND $timeFilter"

# ------------------------------------------------------------------------------------------------
# Builders
# ------------------------------------------------------------------------------------------------


def target(ref: str, query: str, *, fmt: str = "time_series", alias: str | None = None) -> Json:
    """A raw InfluxQL target."""
    out: Json = {
        "refId": ref,
        "datasource": DS,
        "query": query,
        "rawQuery": True,
        "resultFormat": fmt,
    }
    if alias is not None:
        out["alias"] = alias
    return out


def grid(x: int, y: int, w: int, h: int) -> Json:
    return {"x": x, "y": y, "w": w, "h": h}


def override(matcher: str, name: str, properties: list[tuple[str, Any]]) -> Json:
    return {
        "matcher": {"id": matcher, "options": name},
        "properties": [{"id": key, "value": value} for key, value in properties],
    }


def panel(
    kind: str,
    pid: int,
    title: str,
    pos: Json,
    targets: list[Json],
    *,
    description: str,
    options: Json,
    defaults: Json,
    overrides: list[Json] | None = None,
    transformations: list[Json] | None = None,
    **extra: Any,
) -> Json:
    out: Json = {
        "type": kind,
        "id": pid,
        "title": title,
        "description": description,
        "datasource": DS,
        "gridPos": pos,
        "targets": targets,
        "options": options,
        "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
    }
    if transformations:
        out["transformations"] = transformations
    out.update(extra)
    return out


def timeseries(
    pid: int,
    title: str,
    pos: Json,
    targets: list[Json],
    *,
    description: str,
    unit: str = "short",
    bars: bool = False,
    stacked: bool = False,
    overrides: list[Json] | None = None,
    **extra: Any,
) -> Json:
    custom: Json = {
        "drawStyle": "bars" if bars else "line",
        "lineWidth": 1 if bars else 2,
        "fillOpacity": 80 if bars else 10,
        "showPoints": "never" if bars else "auto",
        "spanNulls": False,
        "axisCenteredZero": bars,
        "stacking": {"mode": "normal" if stacked else "none", "group": "A"},
    }
    return panel(
        "timeseries",
        pid,
        title,
        pos,
        targets,
        description=description,
        options={
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        defaults={"unit": unit, "custom": custom},
        overrides=overrides,
        **extra,
    )


def table(
    pid: int,
    title: str,
    pos: Json,
    targets: list[Json],
    *,
    description: str,
    sort_by: str | None = None,
    desc: bool = True,
    overrides: list[Json] | None = None,
    transformations: list[Json] | None = None,
) -> Json:
    options: Json = {"showHeader": True, "cellHeight": "sm"}
    if sort_by is not None:
        options["sortBy"] = [{"displayName": sort_by, "desc": desc}]
    return panel(
        "table",
        pid,
        title,
        pos,
        targets,
        description=description,
        options=options,
        defaults={"unit": "locale", "custom": {"align": "auto", "filterable": True}},
        overrides=overrides,
        transformations=transformations,
    )


def query_variable(
    name: str,
    label: str,
    query: str,
    *,
    multi: bool = True,
    include_all: bool = True,
    description: str,
) -> Json:
    """A `SHOW TAG VALUES` variable; multi/All values are regex-escaped and joined by Grafana."""
    current: Json = (
        {"selected": True, "text": ["All"], "value": ["$__all"]}
        if include_all
        else {"selected": False, "text": "", "value": ""}
    )
    return {
        "type": "query",
        "name": name,
        "label": label,
        "description": description,
        "datasource": DS,
        "query": query,
        "refresh": 2,
        "sort": 1,
        "multi": multi,
        "includeAll": include_all,
        "current": current,
        "options": [],
        "regex": "",
        "hide": 0,
    }


def textbox_variable(name: str, label: str, value: str, *, description: str) -> Json:
    option = {"selected": True, "text": value, "value": value}
    return {
        "type": "textbox",
        "name": name,
        "label": label,
        "description": description,
        "query": value,
        "current": option,
        "options": [option],
        "hide": 0,
    }


PLATFORMS_OF_FOLLOWERS = 'SHOW TAG VALUES FROM "followers" WITH KEY = "platform"'
ACCOUNTS_OF_PLATFORM = f'SHOW TAG VALUES FROM "followers" WITH KEY = "account" WHERE {PLATFORM}'


def platform_variable(*, multi: bool = True, measurement: str = "followers") -> Json:
    return query_variable(
        "platform",
        "Platform",
        f'SHOW TAG VALUES FROM "{measurement}" WITH KEY = "platform"',
        multi=multi,
        include_all=multi,
        description="Platforms with data in InfluxDB.",
    )


def dashboard(
    uid: str,
    title: str,
    description: str,
    panels: list[Json],
    variables: list[Json],
    *,
    annotations: list[Json] | None = None,
    time_from: str = "now-7d",
) -> Json:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": TAGS,
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "refresh": "5m",
        "time": {"from": time_from, "to": "now"},
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "links": [
            {
                "title": "followerwatch",
                "type": "dashboards",
                "tags": TAGS,
                "asDropdown": True,
                "includeVars": False,
                "keepTime": True,
                "icon": "external link",
                "targetBlank": False,
                "tooltip": "",
                "url": "",
            }
        ],
        "annotations": {"list": annotations or []},
        "templating": {"list": variables},
        "panels": panels,
    }


ACCOUNT_LINK = (
    "/d/followerwatch-account/account?var-platform=${__data.fields.platform}"
    "&var-account=${__data.fields.account}&${__url_time_range}"
)


def account_link_override(name: str = "account") -> Json:
    return override(
        "byName", name, [("links", [{"title": "Open ${__value.text}", "url": ACCOUNT_LINK}])]
    )


# ------------------------------------------------------------------------------------------------
# 1. Overview
# ------------------------------------------------------------------------------------------------


def overview() -> Json:
    current = (
        f'SELECT last("followers") AS "followers" FROM "followers" WHERE {WHERE}'
        f" GROUP BY {BY_ACCOUNT}"
    )
    accounts = table(
        1,
        "Watched accounts",
        grid(0, 0, 24, 9),
        [
            target("A", current, fmt="table"),
            target("B", change_query("1h", "change_1h"), fmt="table"),
            target("C", change_query("24h", "change_24h"), fmt="table"),
            target("D", change_query("7d", "change_7d"), fmt="table"),
            target("E", NEAREST_THRESHOLD, fmt="table"),
            target("F", PROJECTION_ETA, fmt="table"),
        ],
        description=(
            "Current count (the last in the time range), its change over 1 h, 24 h and 7 d "
            "(minus the last count at or before that long before the range's end, looking "
            "back at most 7 d further), the nearest below/above line from the watchlist and "
            "the signed distance to it (the `distance` field of the last count that has one), "
            "and for accounts with an "
            "`approaching` rule the ETA: when the trend reaches its nearest line ahead "
            "(followerwatch_projections), from a projection no older than $eta_age before "
            "the range's end."
        ),
        sort_by="Followers",
        transformations=[
            # Each query's frames carry their own Time; drop it so rows merge on platform+account.
            {"id": "organize", "options": {"excludeByName": {"Time": True}}},
            {"id": "merge", "options": {}},
            {
                "id": "organize",
                "options": {
                    "indexByName": {
                        "platform": 0,
                        "account": 1,
                        "followers": 2,
                        "change_1h": 3,
                        "change_24h": 4,
                        "change_7d": 5,
                        "nearest": 6,
                        "distance": 7,
                        "eta_s": 8,
                        "line": 9,
                        "direction": 10,
                    },
                    "renameByName": {
                        "platform": "Platform",
                        "account": "Account",
                        "followers": "Followers",
                        "change_1h": "Change 1 h",
                        "change_24h": "Change 24 h",
                        "change_7d": "Change 7 d",
                        "nearest": "Nearest threshold",
                        "distance": "Distance",
                        "eta_s": "ETA",
                        "line": "ETA line",
                        "direction": "ETA direction",
                    },
                },
            },
        ],
        overrides=[
            account_link_override("Account"),
            override("byName", "ETA", [("unit", "dtdurations")]),
        ],
    )
    trend = timeseries(
        2,
        "Followers",
        grid(0, 9, 24, 9),
        [
            target(
                "A",
                f'SELECT last("followers") FROM "followers" WHERE {WHERE}'
                f" GROUP BY time($__interval), {BY_ACCOUNT} fill(none)",
                alias="$tag_account ($tag_platform)",
            )
        ],
        description="Follower count of every selected account.",
    )
    gainers = table(
        3,
        "Top gainers",
        grid(0, 18, 12, 8),
        [target("A", range_change("top"), fmt="table")],
        description="The ten accounts that gained most over the time range (last − first).",
        sort_by="change",
        overrides=[account_link_override()],
    )
    losers = table(
        4,
        "Top losers",
        grid(12, 18, 12, 8),
        [target("A", range_change("bottom"), fmt="table")],
        description="The ten accounts that lost most over the time range (last − first).",
        sort_by="change",
        desc=False,
        overrides=[account_link_override()],
    )
    return dashboard(
        "followerwatch-overview",
        "followerwatch: Overview",
        "Every watched account: current followers, recent change, distance to its thresholds.",
        [accounts, trend, gainers, losers],
        [
            platform_variable(),
            query_variable(
                "account",
                "Account",
                ACCOUNTS_OF_PLATFORM,
                description="Accounts (the `account` tag) of the selected platforms.",
            ),
            textbox_variable(
                ETA_AGE,
                "ETA max age",
                "1h",
                description=(
                    "Oldest projection the ETA column shows, before the range's end (an InfluxQL "
                    "duration such as 1h; at least the poll interval)."
                ),
            ),
        ],
        time_from="now-7d",
    )


# ------------------------------------------------------------------------------------------------
# 2. Account
# ------------------------------------------------------------------------------------------------

EVENTS_QUERY = (
    'SELECT "message", "kind", "rule", "value", "threshold" FROM "followerwatch_events"'
    f" WHERE {WHERE}"
)
# The unusual rule's fires and resolutions have an annotation of their own (beside its score);
# the other one leaves them out, so no event is drawn twice.
UNUSUAL = "\"rule\" = 'unusual'"
RULE_EVENTS_QUERY = f"{EVENTS_QUERY} AND \"rule\" != 'unusual'"
UNUSUAL_EVENTS_QUERY = f"{EVENTS_QUERY} AND {UNUSUAL}"
UNUSUAL_SCORE = (
    f'SELECT last("unusual") AS "unusual score" FROM "followers" WHERE {WHERE}'
    " GROUP BY time($__interval) fill(none)"
)


def events_annotation(name: str, query: str, color: str) -> Json:
    """Events of followerwatch_events as annotations: the message as text, kind and rule as tags."""
    return {
        "name": name,
        "datasource": DS,
        "enable": True,
        "hide": False,
        "iconColor": color,
        "target": {
            "refId": "Anno",
            "datasource": DS,
            "query": query,
            "rawQuery": True,
            "resultFormat": "table",
            "fromAnnotations": True,
            "queryType": "tags",
            "textColumn": "message",
            "tagsColumn": "kind,rule",
            "titleColumn": "",
            "timeEndColumn": "",
            "limit": 100,
            "matchAny": False,
            "tags": [],
            "type": "tags",
        },
    }


def account() -> Json:
    followers = timeseries(
        1,
        "Followers and threshold lines",
        grid(0, 0, 24, 10),
        [
            target(
                "A",
                f'SELECT last("followers") AS "followers" FROM "followers" WHERE {WHERE}'
                " GROUP BY time($__interval) fill(none)",
                alias="followers",
            ),
            target("B", LINES, alias="$tag_rule"),
        ],
        description=(
            "The count, with each below/above line from the watchlist (written to "
            f"followerwatch_thresholds at start-up, on a change and every {LINE_REFRESH}, so "
            f"read from {LINE_REFRESH} before the range) drawn dashed. Threshold events from "
            "followerwatch_events are annotations."
        ),
        overrides=[
            override(
                "byFrameRefID",
                "B",
                [
                    ("custom.lineStyle", {"fill": "dash", "dash": [10, 10]}),
                    ("custom.fillOpacity", 0),
                    ("custom.showPoints", "never"),
                    ("color", {"mode": "fixed", "fixedColor": "red"}),
                ],
            )
        ],
    )

    def net_change(pid: int, title: str, every: str, pos: Json) -> Json:
        return timeseries(
            pid,
            title,
            pos,
            [
                target(
                    "A",
                    f'SELECT difference(last("followers")) AS "net change" FROM "followers"'
                    f" WHERE {WHERE} GROUP BY time({every}) fill(none)",
                    alias="net change",
                )
            ],
            description=(
                f"Last count of each {every} bucket (UTC) minus that of the bucket before it; "
                "buckets without a count are skipped."
            ),
            bars=True,
        )

    following = timeseries(
        4,
        "Following and posts",
        grid(0, 24, 12, 8),
        [
            target(
                "A",
                f'SELECT last("following") AS "following", last("posts") AS "posts"'
                f' FROM "followers" WHERE {WHERE} GROUP BY time($__interval) fill(none)',
            )
        ],
        description="Where the platform reports them (X, Mastodon, Bluesky, GitHub, ...).",
    )
    events = table(
        5,
        "Events",
        grid(12, 24, 12, 8),
        [target("A", EVENTS_QUERY + " ORDER BY time DESC", fmt="table")],
        description="Every event the rules raised for this account (followerwatch_events).",
    )
    unusual = timeseries(
        6,
        "Unusual score",
        grid(0, 10, 24, 6),
        [target("A", UNUSUAL_SCORE, alias="unusual score")],
        description=(
            "The unusual rule's score of each count (the `unusual` field of followers): how far "
            "the change per hour is from the account's own typical change, in spreads; far "
            "below zero is an unusual drop. Empty while the rule learns or is off. Its fires and "
            "resolutions are annotations."
        ),
    )
    return dashboard(
        "followerwatch-account",
        "followerwatch: Account",
        "One account: followers with its threshold lines, the unusual score, net change, "
        "following and posts.",
        [
            followers,
            unusual,
            net_change(2, "Net change per hour", "1h", grid(0, 16, 12, 8)),
            net_change(3, "Net change per day", "1d", grid(12, 16, 12, 8)),
            following,
            events,
        ],
        [
            platform_variable(multi=False),
            query_variable(
                "account",
                "Account",
                ACCOUNTS_OF_PLATFORM,
                multi=False,
                include_all=False,
                description="The account to show.",
            ),
        ],
        annotations=[
            events_annotation("Threshold events", RULE_EVENTS_QUERY, "red"),
            events_annotation("Unusual changes", UNUSUAL_EVENTS_QUERY, "orange"),
        ],
        time_from="now-7d",
    )


# ------------------------------------------------------------------------------------------------
# 3. Race
# ------------------------------------------------------------------------------------------------


def race() -> Json:
    followers = timeseries(
        1,
        "Followers",
        grid(0, 0, 24, 10),
        [
            target(
                "A",
                f'SELECT last("followers") FROM "followers" WHERE {RACE_WHERE}'
                ' GROUP BY time($__interval), "account" fill(none)',
                alias="$tag_account",
            ),
            target(
                "B",
                f'SELECT last("followers") * 0 + $line AS "line" FROM "followers"'
                f" WHERE {RACE_WHERE} GROUP BY time($__interval) fill(previous)",
                alias="line",
            ),
        ],
        description="Every account in the race, and the line ($line) they race to.",
        overrides=[
            override(
                "byFrameRefID",
                "B",
                [
                    ("custom.lineStyle", {"fill": "dash", "dash": [10, 10]}),
                    ("custom.fillOpacity", 0),
                    ("color", {"mode": "fixed", "fixedColor": "red"}),
                ],
            )
        ],
    )
    distance = timeseries(
        2,
        "Distance to the line",
        grid(0, 10, 12, 8),
        [
            target(
                "A",
                f'SELECT last("followers") - $line AS "distance" FROM "followers"'
                f' WHERE {RACE_WHERE} GROUP BY time($__interval), "account" fill(none)',
                alias="$tag_account",
            )
        ],
        description="Followers minus the line: negative until an account reaches it.",
    )
    first = table(
        3,
        "First to reach the line",
        grid(12, 10, 12, 8),
        [
            target(
                "A",
                f'SELECT first("followers") AS "followers" FROM "followers" WHERE {RACE_WHERE}'
                f' AND "followers" >= $line GROUP BY {BY_ACCOUNT}',
                fmt="table",
            )
        ],
        description="When each account first had at least $line followers in the time range.",
        sort_by="Time",
        desc=False,
        overrides=[override("byName", "Time", [("unit", "dateTimeAsIso")])],
    )
    gap = timeseries(
        4,
        "Gap: $leader − $accounts",
        grid(0, 18, 8, 8),
        [target("A", RACE_GAP, alias="$leader − $accounts")],
        description=(
            "The leader's count minus this account's, per interval (repeated for every "
            "account in the race)."
        ),
        repeat="accounts",
        repeatDirection="h",
        maxPerRow=3,
    )
    return dashboard(
        "followerwatch-race",
        "followerwatch: Race",
        "Several accounts on one chart: the gap to the leader and the distance to a chosen line.",
        [followers, distance, first, gap],
        [
            platform_variable(),
            query_variable(
                "accounts",
                "Accounts",
                ACCOUNTS_OF_PLATFORM,
                description="The accounts in the race.",
            ),
            query_variable(
                "leader",
                "Leader",
                ACCOUNTS_OF_PLATFORM + ' AND "account" =~ /^$accounts$/',
                multi=False,
                include_all=False,
                description="The account the others are measured against.",
            ),
            textbox_variable(
                "line",
                "Line",
                "1000000",
                description="The count the accounts race to (an integer).",
            ),
        ],
        time_from="now-30d",
    )


# ------------------------------------------------------------------------------------------------
# 4. Service health
# ------------------------------------------------------------------------------------------------


def service_health() -> Json:
    polls = timeseries(
        1,
        "Polls by platform and outcome",
        grid(0, 0, 12, 8),
        [
            target(
                "A",
                f'SELECT count("accounts") AS "polls" FROM "followerwatch_polls"'
                f' WHERE {POLLS_WHERE} GROUP BY time($__interval), "platform", "outcome"'
                " fill(none)",
                alias="$tag_platform $tag_outcome",
            )
        ],
        description="Batch polls per interval: ok, partial, auth, rate_limited, error.",
        bars=True,
        stacked=True,
    )
    failures = timeseries(
        2,
        "Failures",
        grid(12, 0, 12, 8),
        [
            target(
                "A",
                f'SELECT sum("failures") AS "accounts failed" FROM "followerwatch_polls"'
                f' WHERE {POLLS_WHERE} GROUP BY time($__interval), "platform" fill(none)',
                alias="$tag_platform accounts failed",
            ),
            target(
                "B",
                f'SELECT count("accounts") AS "polls failed" FROM "followerwatch_polls"'
                f' WHERE {POLLS_WHERE} AND "outcome" !~ /^(ok|partial)$/'
                ' GROUP BY time($__interval), "platform" fill(none)',
                alias="$tag_platform polls failed",
            ),
        ],
        description=(
            "Accounts a batch answered without a count (not found, suspended, ...) and "
            "polls that failed as a whole (auth, rate_limited, error)."
        ),
        bars=True,
    )
    latency = timeseries(
        3,
        "Poll latency",
        grid(0, 8, 12, 8),
        [
            target(
                "A",
                f'SELECT mean("duration_ms") AS "mean", max("duration_ms") AS "max"'
                f' FROM "followerwatch_polls" WHERE {POLLS_WHERE}'
                ' GROUP BY time($__interval), "platform" fill(none)',
                alias="$tag_platform $col",
            )
        ],
        description="How long a batch poll took, including waits for rate limits.",
        unit="ms",
    )
    headroom = timeseries(
        4,
        "Rate-limit headroom",
        grid(12, 8, 12, 8),
        [
            target(
                "A",
                f'SELECT min("ratelimit_remaining") AS "remaining" FROM "followerwatch_polls"'
                f' WHERE {POLLS_WHERE} GROUP BY time($__interval), "platform" fill(none)',
                alias="$tag_platform",
            )
        ],
        description="Requests left in the platform's rate-limit window, where it reports it.",
    )
    last_ok = table(
        5,
        "Last successful poll per account",
        grid(0, 16, 12, 8),
        [
            target(
                "A",
                f'SELECT last("followers") AS "followers" FROM "followers" WHERE {POLLS_WHERE}'
                f" GROUP BY {BY_ACCOUNT}",
                fmt="table",
            )
        ],
        description=(
            "Time of each account's last stored count, shown as its age; an account "
            "missing here had no successful poll in the time range."
        ),
        sort_by="Time",
        desc=False,
        overrides=[
            override("byName", "Time", [("unit", "dateTimeFromNow"), ("displayName", "Age")]),
            account_link_override(),
        ],
    )
    totals = table(
        6,
        "Totals by platform and outcome",
        grid(12, 16, 12, 8),
        [
            target(
                "A",
                'SELECT count("accounts") AS "polls", sum("observations") AS "observations",'
                ' sum("failures") AS "failures", sum("requests") AS "requests"'
                f' FROM "followerwatch_polls" WHERE {POLLS_WHERE} GROUP BY "platform", "outcome"',
                fmt="table",
            )
        ],
        description="Polls, counts stored, failed accounts and API requests in the time range.",
        transformations=[{"id": "organize", "options": {"excludeByName": {"Time": True}}}],
    )
    queues = timeseries(
        7,
        "Queued: points waiting for InfluxDB, alerts waiting for delivery",
        grid(0, 24, 24, 8),
        [
            target(
                "A",
                'SELECT last("spooled") AS "points waiting", last("alerts_pending") AS'
                ' "alerts waiting" FROM "followerwatch_spool" WHERE $timeFilter'
                " GROUP BY time($__interval) fill(previous)",
                alias="$col",
            )
        ],
        description=(
            "The durable spool's backlog (grows while InfluxDB is down, drains oldest first) "
            "and alert deliveries still pending in the outbox."
        ),
    )
    return dashboard(
        "followerwatch-service-health",
        "followerwatch: Service health",
        "Polls and failures by platform and outcome, latency, rate-limit headroom, freshness.",
        [polls, failures, latency, headroom, last_ok, totals, queues],
        [platform_variable(measurement="followerwatch_polls")],
        time_from="now-24h",
    )


DASHBOARDS = {
    "overview": overview,
    "account": account,
    "race": race,
    "service-health": service_health,
}


def render(board: Json) -> str:
    """The committed text of one dashboard."""
    return json.dumps(board, indent=2, ensure_ascii=False) + "\n"


def build() -> dict[str, str]:
    """File name → JSON text of every dashboard."""
    return {f"{name}.json": render(make()) for name, make in DASHBOARDS.items()}


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for name, text in build().items():
        path = DASHBOARD_DIR / name
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        stale.append(name)
        if not check:
            DASHBOARD_DIR.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    if check and stale:
        print(f"stale: {', '.join(stale)}; run python grafana/generate.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
