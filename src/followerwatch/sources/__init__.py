"""The explicit source registry: each platform module's SPEC, by platform key."""

from __future__ import annotations

from followerwatch.sources import bluesky, github, http_json, mastodon, reddit, twitch, x, youtube
from followerwatch.sources.base import SourceSpec

__all__ = ["REGISTRY", "SPECS", "SourceSpec", "registry"]

# The order the platforms are listed in (config, docs, plans).
SPECS: tuple[SourceSpec, ...] = (
    x.SPEC,
    mastodon.SPEC,
    bluesky.SPEC,
    youtube.SPEC,
    github.SPEC,
    twitch.SPEC,
    reddit.SPEC,
    http_json.SPEC,
)


def registry(specs: tuple[SourceSpec, ...]) -> dict[str, SourceSpec]:
    """Specs by key; two specs claiming one key are a ValueError."""
    out: dict[str, SourceSpec] = {}
    for spec in specs:
        if spec.key in out:
            raise ValueError(f"two sources claim the key {spec.key!r}")
        out[spec.key] = spec
    return out


REGISTRY: dict[str, SourceSpec] = registry(SPECS)
