"""The explicit source registry: platform key → its module's Config model and builder."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from re import Pattern
from typing import Any

from followerwatch.config.base import PlatformConfig
from followerwatch.models import Account
from followerwatch.sources import bluesky, github, http_json, mastodon, reddit, twitch, x, youtube
from followerwatch.sources.base import Source, SourceContext


@dataclass(frozen=True)
class SourceSpec:
    """What the rest of the service needs to know about one platform."""

    key: str
    title: str
    config_model: type[PlatformConfig]
    build: Callable[[Any, SourceContext], Source]
    batch_max: int
    handle_pattern: Pattern[str]
    # (requests, per seconds) the platform allows one credential; None when it publishes none.
    rate_limit_ceiling: tuple[int, float] | None
    # Accounts that must be fetched apart (e.g. each Mastodon instance) get different keys.
    group_key: Callable[[Account], str] | None = None
    # Count requests one batch of N accounts costs under a config, when not 1.
    requests_per_batch: Callable[[Any, int], int] | None = None
    # The ceiling under a config, when it depends on it (a token, a quota).
    ceiling_for: Callable[[Any], tuple[int, float] | None] | None = None


REGISTRY: dict[str, SourceSpec] = {
    spec.key: spec
    for spec in (
        SourceSpec(
            "x",
            "X",
            x.XConfig,
            x.build,
            x.XSource.batch_max,
            x.XSource.handle_pattern,
            x.XSource.rate_limit_ceiling,
        ),
        SourceSpec(
            "mastodon",
            "Mastodon",
            mastodon.MastodonConfig,
            mastodon.build,
            mastodon.MastodonSource.batch_max,
            mastodon.MastodonSource.handle_pattern,
            mastodon.MastodonSource.rate_limit_ceiling,
            group_key=mastodon.group_key,
        ),
        SourceSpec(
            "bluesky",
            "Bluesky",
            bluesky.BlueskyConfig,
            bluesky.build,
            bluesky.BlueskySource.batch_max,
            bluesky.BlueskySource.handle_pattern,
            bluesky.BlueskySource.rate_limit_ceiling,
        ),
        SourceSpec(
            "youtube",
            "YouTube",
            youtube.YouTubeConfig,
            youtube.build,
            youtube.YouTubeSource.batch_max,
            youtube.YouTubeSource.handle_pattern,
            youtube.YouTubeSource.rate_limit_ceiling,
            ceiling_for=youtube.ceiling_for,
        ),
        SourceSpec(
            "github",
            "GitHub",
            github.GitHubConfig,
            github.build,
            github.GitHubSource.batch_max,
            github.GitHubSource.handle_pattern,
            github.GitHubSource.rate_limit_ceiling,
            requests_per_batch=github.requests_per_batch,
            ceiling_for=github.ceiling_for,
        ),
        SourceSpec(
            "twitch",
            "Twitch",
            twitch.TwitchConfig,
            twitch.build,
            twitch.TwitchSource.batch_max,
            twitch.TwitchSource.handle_pattern,
            twitch.TwitchSource.rate_limit_ceiling,
            requests_per_batch=twitch.requests_per_batch,
        ),
        SourceSpec(
            "reddit",
            "Reddit",
            reddit.RedditConfig,
            reddit.build,
            reddit.RedditSource.batch_max,
            reddit.RedditSource.handle_pattern,
            reddit.RedditSource.rate_limit_ceiling,
            ceiling_for=reddit.ceiling_for,
        ),
        SourceSpec(
            "http_json",
            "Generic JSON",
            http_json.HttpJsonConfig,
            http_json.build,
            http_json.HttpJsonSource.batch_max,
            http_json.HttpJsonSource.handle_pattern,
            http_json.HttpJsonSource.rate_limit_ceiling,
        ),
    )
}
