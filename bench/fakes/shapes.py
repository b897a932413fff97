"""What the fake API answers: ids that encode an index, and each platform's account objects."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

BUMP = 1_000_000  # what `phase` adds to every count: crosses any `above` line set below it
_BASE32 = "abcdefghijklmnopqrstuvwxyz234567"
X_ID0 = 1_500_000_000
MASTODON_ID0 = 109_000_000_000_000_000
LIMITS = {"x": 100, "bluesky": 25, "youtube": 50, "mastodon": 40}
PLATFORMS = tuple(LIMITS)


def split(n: int) -> dict[str, int]:
    """N accounts spread evenly over the four platforms."""
    base, extra = divmod(n, len(PLATFORMS))
    return {p: base + (1 if k < extra else 0) for k, p in enumerate(PLATFORMS)}


def plc(i: int) -> str:
    """The did:plc of index i (base32, left-padded with the zero digit 'a')."""
    digits = ""
    while True:
        i, rest = divmod(i, 32)
        digits = _BASE32[rest] + digits
        if i == 0:
            break
    return "did:plc:" + digits.rjust(24, "a")


def plc_index(did: str) -> int | None:
    """The index a did:plc encodes, or None."""
    if not did.startswith("did:plc:"):
        return None
    value = 0
    for ch in did[8:]:
        digit = _BASE32.find(ch)
        if digit < 0:
            return None
        value = value * 32 + digit
    return value


def channel_id(i: int) -> str:
    """The YouTube channel id of index i (UC + 22 characters)."""
    return f"UCbench{i:017d}"


def x_user(i: int, followers: int) -> dict[str, Any]:
    """One X user object with its public metrics."""
    return {
        "id": str(X_ID0 + i),
        "name": f"User {i}",
        "username": f"u{i}",
        "public_metrics": {
            "followers_count": followers,
            "following_count": 10,
            "tweet_count": 50,
            "listed_count": 1,
            "like_count": 3,
        },
    }


def bsky_profile(i: int, followers: int) -> dict[str, Any]:
    """One Bluesky profile view."""
    return {
        "did": plc(i),
        "handle": f"u{i}.bsky.social",
        "displayName": f"User {i}",
        "labels": [],
        "createdAt": "2024-02-06T00:00:00.000Z",
        "indexedAt": "2025-12-31T00:00:00.000Z",
        "followersCount": followers,
        "followsCount": 40,
        "postsCount": 25,
    }


def mastodon_account(i: int, followers: int) -> dict[str, Any]:
    """One Mastodon Account entity."""
    return {
        "id": str(MASTODON_ID0 + i),
        "username": f"u{i}",
        "acct": f"u{i}",
        "display_name": f"User {i}",
        "locked": False,
        "bot": False,
        "created_at": "2022-11-01T00:00:00.000Z",
        "note": "",
        "url": f"https://bench.social/@u{i}",
        "followers_count": followers,
        "following_count": 20,
        "statuses_count": 300,
        "emojis": [],
        "fields": [],
    }


def bsky_headers() -> dict[str, str]:
    return {
        "RateLimit-Limit": "3000",
        "RateLimit-Remaining": "2999",
        "RateLimit-Reset": str(int(time.time()) + 300),
        "RateLimit-Policy": "3000;w=300",
    }


def published(n: int) -> str:
    if n < 1_000:
        return str(n)
    step = 10 ** (len(str(n)) - 3)
    return str(n // step * step)


def mastodon_headers() -> dict[str, str]:
    now = int(time.time())
    reset = datetime.fromtimestamp(now + 300 - now % 300, UTC)
    return {
        "X-RateLimit-Limit": "300000",
        "X-RateLimit-Remaining": "299999",
        "X-RateLimit-Reset": reset.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }
