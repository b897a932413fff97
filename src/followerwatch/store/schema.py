"""The InfluxDB schema contract (documented in the README): values → points."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime

from followerwatch.models import Event, FieldValue, Observation, Point
from followerwatch.store.lineprotocol import (
    INT64_MAX,
    INT64_MIN,
    encode_line,
    int_field,
    line_timestamp,
    tag_value,
)
from followerwatch.store.spool import SpoolCounts
from followerwatch.store.thresholds import nearest_distance

FOLLOWERS = "followers"
EVENTS = "followerwatch_events"
POLLS = "followerwatch_polls"
SPOOL = "followerwatch_spool"


def observation_point(
    obs: Observation, lines: Sequence[tuple[str, int]] = (), unusual: float | None = None
) -> Point:
    """`followers`: tags platform, account (+ labels); integer followers[, following, posts,
    resolution], with the account's threshold `lines` the signed `distance` to the nearest, and
    with a finite `unusual` score the float field `unusual`."""
    tags, fields = _observation_parts(obs, lines, unusual)
    return Point(FOLLOWERS, tags, fields, obs.time)


def observation_line(
    obs: Observation,
    precision: str,
    lines: Sequence[tuple[str, int]] = (),
    unusual: float | None = None,
) -> str:
    """`observation_point` encoded as line protocol, without the Point (the hot path)."""
    account = obs.account
    name, platform = account.name, account.platform
    followers = int_field(obs.followers)
    # Labels, empty or very long names (the series-key size limit) take the general path.
    if account.labels or not 0 < len(name) < 1000 or not platform or followers is None:
        tags, fields = _observation_parts(obs, lines, unusual)
        return encode_line(FOLLOWERS, tags, fields, obs.time, precision)
    # Without labels the tags are (account, platform) in key order, and every field an int.
    text = "followers=" + followers
    for key, value in (
        ("following", obs.following),
        ("posts", obs.posts),
        ("resolution", obs.resolution),
        ("distance", nearest_distance(obs.followers, lines) if lines else None),
    ):
        if value is not None:
            rendered = int_field(value)
            if rendered is None:
                tags, fields = _observation_parts(obs, lines, unusual)
                return encode_line(FOLLOWERS, tags, fields, obs.time, precision)
            text += "," + key + "=" + rendered
    if unusual is not None:
        text += _unusual_field(unusual)
    return (
        f"followers,account={tag_value(name)},platform={tag_value(platform)} {text}"
        f" {line_timestamp(obs.time, precision)}"
    )


def observation_lines(
    observations: Sequence[Observation],
    precision: str,
    thresholds: Mapping[tuple[str, str], Sequence[tuple[str, int]]],
    scores: Mapping[int, float] | None = None,
) -> list[str]:
    """`observation_line` of each observation (with its account's `thresholds`, and the score in
    `scores` at its place in `observations`, if any), in order.

    A poll's observations share their platform and their time: each is escaped and converted
    once per batch, so a plain account costs one tag check and the formatting of its fields.
    Anything unusual goes through `observation_line` itself, which raises as it does.
    """
    out: list[str] = []
    heads: dict[str, str] = {}  # platform → the line's text between the account and the fields
    last_time: datetime | None = None
    stamp = ""
    lines_of = thresholds.get
    # Most batches have no scores at all: then a plain account costs no look-up for one.
    score_of = scores.get if scores else None
    for i, obs in enumerate(observations):
        account = obs.account
        name, platform = account.name, account.platform
        followers = obs.followers
        lines = lines_of((platform, name), ())
        score = score_of(i) if score_of is not None else None
        if (
            account.labels
            or not 0 < len(name) < 1000
            or type(followers) is not int
            or not INT64_MIN <= followers <= INT64_MAX
        ):
            out.append(observation_line(obs, precision, lines, score))
            continue
        text = f"followers={followers}i"
        for key, value in (
            (",following=", obs.following),
            (",posts=", obs.posts),
            (",resolution=", obs.resolution),
            (",distance=", _distance(followers, lines)),
        ):
            if value is None:
                continue
            if type(value) is not int or not INT64_MIN <= value <= INT64_MAX:
                text = ""
                break
            text += f"{key}{value}i"
        head = heads.get(platform)
        if head is None and platform:
            head = heads[platform] = f",platform={tag_value(platform)} "
        if not text or head is None:
            out.append(observation_line(obs, precision, lines, score))
            continue
        if score is not None:
            text += _unusual_field(score)
        when = obs.time
        if when is not last_time:
            stamp = f" {line_timestamp(when, precision)}"
            last_time = when
        out.append(f"followers,account={tag_value(name)}{head}{text}{stamp}")
    return out


def _distance(followers: int, lines: Sequence[tuple[str, int]]) -> int | None:
    # Most accounts have a single line: its distance needs no search.
    if len(lines) == 1:
        return followers - lines[0][1]
    return nearest_distance(followers, lines) if lines else None


def _unusual_field(score: float) -> str:
    """`,unusual=<float>`: always a float (3.0, never 3i), and nothing for NaN or infinities."""
    value = float(score)
    return ",unusual=" + repr(value) if math.isfinite(value) else ""


def _observation_parts(
    obs: Observation, lines: Sequence[tuple[str, int]], unusual: float | None = None
) -> tuple[tuple[tuple[str, str], ...], tuple[tuple[str, FieldValue], ...]]:
    account = obs.account
    tags = (("platform", account.platform), ("account", account.name), *account.labels)
    distance = nearest_distance(obs.followers, lines) if lines else None
    if unusual is not None and not math.isfinite(unusual):
        unusual = None  # no line protocol for it: the count goes without
    if (
        obs.following is None
        and obs.posts is None
        and obs.resolution is None
        and distance is None
        and unusual is None
    ):
        return tags, (("followers", obs.followers),)
    fields: list[tuple[str, FieldValue]] = [("followers", obs.followers)]
    if obs.following is not None:
        fields.append(("following", obs.following))
    if obs.posts is not None:
        fields.append(("posts", obs.posts))
    if obs.resolution is not None:
        fields.append(("resolution", obs.resolution))
    if distance is not None:
        fields.append(("distance", distance))
    if unusual is not None:
        fields.append(("unusual", float(unusual)))
    return tags, tuple(fields)


def event_point(event: Event) -> Point:
    """`followerwatch_events`: tags platform, account, rule, kind; message, value, threshold, id,
    and the float `score` when the event has a finite one."""
    fields: tuple[tuple[str, FieldValue], ...] = (
        ("message", event.message),
        ("value", event.value),
        ("threshold", event.threshold),
        ("id", event.id),
    )
    score = event.score
    if score is not None and math.isfinite(score):
        fields += (("score", float(score)),)
    return Point(
        EVENTS,
        (
            ("platform", event.platform),
            ("account", event.account),
            ("rule", event.rule),
            ("kind", str(event.kind)),
        ),
        fields,
        event.time,
    )


def poll_point(
    *,
    platform: str,
    group: str,
    outcome: str,
    time: datetime,
    accounts: int,
    observations: int,
    failures: int,
    requests: int,
    duration_ms: int,
    ratelimit_remaining: int | None,
) -> Point:
    """`followerwatch_polls`: one point per batch poll, for the service-health dashboard."""
    fields: list[tuple[str, FieldValue]] = [
        ("accounts", accounts),
        ("observations", observations),
        ("failures", failures),
        ("requests", requests),
        ("duration_ms", duration_ms),
    ]
    if ratelimit_remaining is not None:
        fields.append(("ratelimit_remaining", ratelimit_remaining))
    return Point(
        POLLS, (("platform", platform), ("group", group), ("outcome", outcome)), tuple(fields), time
    )


def spool_point(counts: SpoolCounts, time: datetime, alerts_pending: int = 0) -> Point:
    """`followerwatch_spool`: the spool ledger (added, written, dropped, ..., spooled)."""
    return Point(
        SPOOL,
        (("host", "followerwatch"),),
        (
            ("added", counts.added),
            ("written", counts.written),
            ("dropped", counts.dropped),
            ("dead_lettered", counts.dead_lettered),
            ("dropped_disk_full", counts.dropped_disk_full),
            ("spooled", counts.spooled),
            ("alerts_pending", alerts_pending),
        ),
        time,
    )
