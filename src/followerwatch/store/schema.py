"""The InfluxDB schema contract (documented in the README): values → points."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from followerwatch.models import Event, FieldValue, Observation, Point
from followerwatch.store.lineprotocol import encode_line, int_field, line_timestamp, tag_value
from followerwatch.store.spool import SpoolCounts
from followerwatch.store.thresholds import nearest_distance

FOLLOWERS = "followers"
EVENTS = "followerwatch_events"
POLLS = "followerwatch_polls"
SPOOL = "followerwatch_spool"


def observation_point(obs: Observation, lines: Sequence[tuple[str, int]] = ()) -> Point:
    """`followers`: tags platform, account (+ labels); integer followers[, following, posts,
    resolution], and with the account's threshold `lines` the signed `distance` to the nearest."""
    tags, fields = _observation_parts(obs, lines)
    return Point(FOLLOWERS, tags, fields, obs.time)


def observation_line(
    obs: Observation, precision: str, lines: Sequence[tuple[str, int]] = ()
) -> str:
    """`observation_point` encoded as line protocol, without the Point (the hot path)."""
    account = obs.account
    name, platform = account.name, account.platform
    followers = int_field(obs.followers)
    # Labels, empty or very long names (the series-key size limit) take the general path.
    if account.labels or not 0 < len(name) < 1000 or not platform or followers is None:
        tags, fields = _observation_parts(obs, lines)
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
                tags, fields = _observation_parts(obs, lines)
                return encode_line(FOLLOWERS, tags, fields, obs.time, precision)
            text += "," + key + "=" + rendered
    return (
        f"followers,account={tag_value(name)},platform={tag_value(platform)} {text}"
        f" {line_timestamp(obs.time, precision)}"
    )


def _observation_parts(
    obs: Observation, lines: Sequence[tuple[str, int]]
) -> tuple[tuple[tuple[str, str], ...], tuple[tuple[str, FieldValue], ...]]:
    account = obs.account
    tags = (("platform", account.platform), ("account", account.name), *account.labels)
    distance = nearest_distance(obs.followers, lines) if lines else None
    if obs.following is None and obs.posts is None and obs.resolution is None and distance is None:
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
    return tags, tuple(fields)


def event_point(event: Event) -> Point:
    """`followerwatch_events`: tags platform, account, rule, kind; message, value, threshold."""
    return Point(
        EVENTS,
        (
            ("platform", event.platform),
            ("account", event.account),
            ("rule", event.rule),
            ("kind", str(event.kind)),
        ),
        (
            ("message", event.message),
            ("value", event.value),
            ("threshold", event.threshold),
            ("id", event.id),
        ),
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
