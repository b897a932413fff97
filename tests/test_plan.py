"""The polling plan: requests per cycle against each credential's ceiling, and X's cost."""

from __future__ import annotations

from followerwatch.config.settings import load_config
from followerwatch.service.plan import build_plan


def test_plan_per_platform_and_credential() -> None:
    watch = [{"platform": "x", "handle": f"user_{i}"} for i in range(250)]
    watch += [{"platform": "youtube", "handle": f"UC{i:022d}"} for i in range(60)]
    watch += [{"platform": "github", "handle": f"dev{i}"} for i in range(10)]
    watch += [{"platform": "twitch", "handle": f"streamer{i}"} for i in range(5)]
    watch += [{"platform": "mastodon", "handle": f"u{i}@a.example"} for i in range(3)]
    watch += [{"platform": "mastodon", "handle": "solo@b.example"}]
    config = load_config(
        None,
        {
            "platforms": {
                "x": {"bearer_token": "t", "interval": "1m"},
                "youtube": {"api_key": "k", "daily_quota": 500, "interval": "5m"},
                "github": {"interval": "15m"},
                "twitch": {"client_id": "c", "client_secret": "s", "interval": "1m"},
            },
            "watch": watch,
        },
    )
    rows = {(r.platform, r.scope): r for r in build_plan(config)}
    x = rows[("x", "")]
    assert (x.accounts, x.requests_per_cycle) == (250, 3)  # ⌈250 / 100⌉, never one per account
    assert x.min_interval == 9.0 and x.share == 0.15 and x.usd_per_day == 2.5
    yt = rows[("youtube", "")]
    assert yt.requests_per_cycle == 2 and yt.ceiling == (500, 86_400.0)
    assert yt.min_interval == 345.6 and yt.share is not None and yt.share > 1  # 5m is too often
    gh = rows[("github", "")]
    assert gh.requests_per_cycle == 10 and gh.ceiling == (60, 3_600.0)  # anonymous REST
    assert gh.min_interval == 600.0 and gh.share is not None and gh.share < 1
    assert rows[("twitch", "")].requests_per_cycle == 6  # one lookup + one count per channel
    assert rows[("mastodon", "a.example")].requests_per_cycle == 1  # one request per instance
    assert rows[("mastodon", "b.example")].accounts == 1
