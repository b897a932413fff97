"""The fake API's single-account lookups, as the peer baseline reads them, found and not found."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
pytest.importorskip("aiohttp")

from aiohttp.test_utils import TestClient, TestServer  # noqa: E402

sys.path.insert(0, str(ROOT))
try:
    from bench.fakes.api import make_app
    from bench.fakes.shapes import MASTODON_ID0, channel_id, plc, split
    from bench.peer import followers, urls
finally:
    sys.path.remove(str(ROOT))

X_AUTH = {"Authorization": "Bearer bench-x-token"}


async def _get(paths: list[tuple[str, dict[str, str]]]) -> list[tuple[int, Any, dict[str, int]]]:
    """(status, body, the fake's request counters) of each GET, in order."""
    out = []
    async with TestClient(TestServer(make_app())) as client:
        for path, headers in paths:
            resp = await client.get(path, headers=headers)
            body = await resp.json()
            stats = await (await client.get("/_bench/stats")).json()
            out.append((resp.status, body, stats["requests"]))
    return out


def test_single_lookups_found() -> None:
    got = asyncio.run(
        _get(
            [
                ("/2/users/by/username/u7?user.fields=public_metrics", X_AUTH),
                (f"/xrpc/app.bsky.actor.getProfile?actor={plc(7)}", {}),
                (f"/youtube/v3/channels?part=statistics&id={channel_id(7)}&key=k", {}),
                (f"/mastodon/api/v1/accounts/{MASTODON_ID0 + 7}", {}),
            ]
        )
    )
    assert [status for status, _, _ in got] == [200] * 4
    # X's single form answers `data` as one object, not a list.
    assert got[0][1]["data"]["username"] == "u7"
    assert got[1][1]["did"] == plc(7)
    assert got[3][1]["id"] == str(MASTODON_ID0 + 7)
    counts = [followers(p, body) for p, (_, body, _) in zip(split(4), got, strict=True)]
    assert counts == [1_007, 1_007, 1_000, 1_007]  # YouTube rounds down to 3 figures
    assert got[-1][2] == dict.fromkeys(["x", "bluesky", "youtube", "mastodon"], 1)


def test_single_lookups_not_found() -> None:
    got = asyncio.run(
        _get(
            [
                ("/2/users/by/username/nobody?user.fields=public_metrics", X_AUTH),
                ("/2/users/by/username/u1", {}),
                ("/xrpc/app.bsky.actor.getProfile?actor=alice.example", {}),
                ("/youtube/v3/channels?part=statistics&id=UCnone&key=k", {}),
                ("/mastodon/api/v1/accounts/12", {}),
            ]
        )
    )
    (x, _, _), (unauth, _, _), (bsky, _, _), (yt, _, _), (masto, _, _) = got
    assert x == 200 and got[0][1]["errors"][0]["title"] == "Not Found Error"
    assert "data" not in got[0][1]
    assert unauth == 401
    assert bsky == 400 and got[2][1] == {"error": "InvalidRequest", "message": "Profile not found"}
    assert yt == 200 and got[3][1]["items"] == []
    assert masto == 404 and got[4][1] == {"error": "Record not found"}
    assert followers("youtube", got[3][1]) is None


def test_peer_urls_one_per_account() -> None:
    made = list(urls("http://api", split(10)))
    assert len(made) == 10 == len({url for _, _, url in made})
    assert [p for p, _, _ in made].count("x") == 3
