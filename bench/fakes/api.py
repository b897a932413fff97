"""One fast aiohttp server faking X, Bluesky, YouTube and Mastodon for the benchmark.

Response shapes follow tests/fakes/fake_*.py (which follow docs/platform-apis.md), but accounts
are not stored: every id or handle encodes its index `i`, and the count is computed from it, so
100,000 accounts cost nothing to set up. Batch limits are enforced as the platforms do (a batch
over the maximum is a 400/422). Optional: latency per request, and X's rate limit with X's own
`x-rate-limit-*` headers (scaled down in time by `--x-window`). A `/hook` route is the webhook
receiver of the alert-latency scenario; `/_bench/*` control and report.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

BUMP = 1_000_000  # what `phase` adds to every count: crosses any `above` line set below it
_BASE32 = "abcdefghijklmnopqrstuvwxyz234567"
X_ID0 = 1_500_000_000
MASTODON_ID0 = 109_000_000_000_000_000
LIMITS = {"x": 100, "bluesky": 25, "youtube": 50, "mastodon": 40}


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


class State:
    """Counters, the phase, the X rate-limit window and the crossing/webhook clocks."""

    def __init__(self, latency: float, x_limit: int, x_window: int) -> None:
        self.latency = latency
        self.phase = 0
        self.requests: dict[str, int] = dict.fromkeys(LIMITS, 0)
        self.rejected: dict[str, int] = dict.fromkeys(LIMITS, 0)
        self.accounts: dict[str, int] = dict.fromkeys(LIMITS, 0)
        self.first_request: float | None = None
        self.last_request: float | None = None
        self.x_limit = x_limit
        self.x_window = x_window
        self.x_remaining = x_limit
        self.x_reset = 0
        self.x_429 = 0
        # [window start, reset epoch, 200s served in it, 429s served in it]
        self.windows: list[list[float]] = []
        self.crossed_sent: dict[str, float] = {}  # "platform:i" → when its phase≥1 answer left
        self.hooks: dict[str, float] = {}  # "platform:account" → when the webhook arrived
        self.hook_count = 0

    def followers(self, i: int) -> int:
        return 1_000 + i + self.phase * BUMP

    def count(self, platform: str, indexes: list[int]) -> None:
        now = time.time()
        if self.first_request is None:
            self.first_request = now
        self.last_request = now
        self.requests[platform] += 1
        self.accounts[platform] += len(indexes)
        if self.phase:
            for i in indexes:
                self.crossed_sent.setdefault(f"{platform}:{i}", now)

    def x_gate(self) -> web.Response | None:
        """X's 300-per-window limit (scaled) with X's headers; None when the request may pass."""
        now = time.time()
        if now >= self.x_reset:
            self.x_remaining = self.x_limit
            self.x_reset = int(now) + self.x_window
            self.windows.append([now, self.x_reset, 0, 0])
        if self.x_remaining <= 0:
            self.x_429 += 1
            self.windows[-1][3] += 1
            body = {
                "title": "Too Many Requests",
                "detail": "Too Many Requests",
                "type": "about:blank",
            }
            return _json(429, body, self.x_headers())
        self.x_remaining -= 1
        self.windows[-1][2] += 1
        return None

    def x_headers(self) -> dict[str, str]:
        return {
            "x-rate-limit-limit": str(self.x_limit),
            "x-rate-limit-remaining": str(max(self.x_remaining, 0)),
            "x-rate-limit-reset": str(self.x_reset),
        }


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=json.dumps(body, separators=(",", ":")).encode(),
        status=status,
        headers=headers,
        content_type="application/json",
    )


def _ints(values: list[str], prefix: str) -> list[int]:
    out = []
    for v in values:
        if v.startswith(prefix) and v[len(prefix) :].isdigit():
            out.append(int(v[len(prefix) :]))
    return out


async def x_users_by(request: web.Request) -> web.Response:
    """GET /2/users/by?usernames=u1,u2&user.fields=public_metrics (X API v2)."""
    st: State = request.app["state"]
    if request.headers.get("Authorization") != "Bearer bench-x-token":
        return _json(401, {"title": "Unauthorized", "type": "about:blank", "status": 401})
    limited = st.x_gate()
    if limited is not None:
        return limited
    names = [n for n in request.query.get("usernames", "").split(",") if n]
    if not 1 <= len(names) <= LIMITS["x"]:
        st.rejected["x"] += 1
        body = {"errors": [{"parameters": {"usernames": names}, "message": "1..100 usernames"}]}
        return _json(400, {**body, "title": "Invalid Request"}, st.x_headers())
    indexes = _ints([n.lower() for n in names], "u")
    if st.latency:
        await asyncio.sleep(st.latency)
    data = [
        {
            "id": str(X_ID0 + i),
            "name": f"User {i}",
            "username": f"u{i}",
            "public_metrics": {
                "followers_count": st.followers(i),
                "following_count": 10,
                "tweet_count": 50,
                "listed_count": 1,
                "like_count": 3,
            },
        }
        for i in indexes
    ]
    st.count("x", indexes)
    return _json(200, {"data": data}, st.x_headers())


async def bsky_profiles(request: web.Request) -> web.Response:
    """GET /xrpc/app.bsky.actor.getProfiles?actors=did&actors=did (public AppView)."""
    st: State = request.app["state"]
    actors = request.query.getall("actors", [])
    if len(actors) > LIMITS["bluesky"]:
        st.rejected["bluesky"] += 1
        body = {"error": "InvalidRequest", "message": "Error: actors must not have more than 25"}
        return _json(400, body)
    indexes = [i for i in (plc_index(a) for a in actors) if i is not None]
    if st.latency:
        await asyncio.sleep(st.latency)
    profiles = [
        {
            "did": plc(i),
            "handle": f"u{i}.bsky.social",
            "displayName": f"User {i}",
            "labels": [],
            "createdAt": "2024-02-06T00:00:00.000Z",
            "indexedAt": "2025-12-31T00:00:00.000Z",
            "followersCount": st.followers(i),
            "followsCount": 40,
            "postsCount": 25,
        }
        for i in indexes
    ]
    st.count("bluesky", indexes)
    reset = int(time.time()) + 300
    headers = {
        "RateLimit-Limit": "3000",
        "RateLimit-Remaining": "2999",
        "RateLimit-Reset": str(reset),
        "RateLimit-Policy": "3000;w=300",
    }
    return _json(200, {"profiles": profiles}, headers)


def _published(n: int) -> str:
    if n < 1_000:
        return str(n)
    step = 10 ** (len(str(n)) - 3)
    return str(n // step * step)


async def yt_channels(request: web.Request) -> web.Response:
    """GET /youtube/v3/channels?part=statistics,snippet&id=UC…,UC…&key=… (Data API v3)."""
    st: State = request.app["state"]
    if "key" not in request.query:
        return _json(403, {"error": {"code": 403, "message": "missing key", "errors": []}})
    ids = request.query.get("id", "").split(",")
    if len(ids) > LIMITS["youtube"]:
        st.rejected["youtube"] += 1
        err = {"message": "Too many ids", "domain": "youtube.parameter", "reason": "invalidValue"}
        return _json(400, {"error": {"code": 400, "message": "Too many ids", "errors": [err]}})
    indexes = _ints(ids, "UCbench")
    parts = set(request.query.get("part", "").split(","))
    if st.latency:
        await asyncio.sleep(st.latency)
    items = []
    for i in indexes:
        item: dict[str, Any] = {"kind": "youtube#channel", "etag": f"e{i}", "id": channel_id(i)}
        if "snippet" in parts:
            item["snippet"] = {"title": f"Channel {i}", "customUrl": f"@channel{i}"}
        if "statistics" in parts:
            item["statistics"] = {
                "viewCount": "100000",
                "subscriberCount": _published(st.followers(i)),
                "hiddenSubscriberCount": False,
                "videoCount": "10",
            }
        items.append(item)
    st.count("youtube", indexes)
    body = {
        "kind": "youtube#channelListResponse",
        "etag": "bench",
        "pageInfo": {"totalResults": len(items), "resultsPerPage": max(len(items), 5)},
        "items": items,
    }
    return _json(200, body)


async def mastodon_accounts(request: web.Request) -> web.Response:
    """GET /mastodon/api/v1/accounts?id[]=…&id[]=… (Mastodon 4.3+)."""
    st: State = request.app["state"]
    ids = list(dict.fromkeys(request.query.getall("id[]", [])))
    if len(ids) > LIMITS["mastodon"]:
        st.rejected["mastodon"] += 1
        return _json(422, {"error": "Validation failed: too many ids"})
    indexes = [int(v) - MASTODON_ID0 for v in ids if v.isdigit() and int(v) >= MASTODON_ID0]
    if st.latency:
        await asyncio.sleep(st.latency)
    found = [
        {
            "id": str(MASTODON_ID0 + i),
            "username": f"u{i}",
            "acct": f"u{i}",
            "display_name": f"User {i}",
            "locked": False,
            "bot": False,
            "created_at": "2022-11-01T00:00:00.000Z",
            "note": "",
            "url": f"https://bench.social/@u{i}",
            "followers_count": st.followers(i),
            "following_count": 20,
            "statuses_count": 300,
            "emojis": [],
            "fields": [],
        }
        for i in sorted(indexes, reverse=True)  # the database's order, not the request's
    ]
    st.count("mastodon", indexes)
    now = int(time.time())
    reset = datetime.fromtimestamp(now + 300 - now % 300, UTC)
    headers = {
        "X-RateLimit-Limit": "300000",
        "X-RateLimit-Remaining": "299999",
        "X-RateLimit-Reset": reset.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }
    return _json(200, found, headers)


async def hook(request: web.Request) -> web.Response:
    """The webhook receiver: remembers when each account's first alert arrived."""
    st: State = request.app["state"]
    arrived = time.time()
    event = (await request.json()).get("event", {})
    st.hook_count += 1
    st.hooks.setdefault(f"{event.get('platform')}:{event.get('account')}", arrived)
    return web.Response(status=204)


async def set_phase(request: web.Request) -> web.Response:
    st: State = request.app["state"]
    st.phase = int(request.query["n"])
    st.crossed_sent.clear()
    return web.Response(status=204)


async def reset(request: web.Request) -> web.Response:
    st: State = request.app["state"]
    q = request.query
    st.__init__(  # type: ignore[misc]  # in place: a started app's state may not be replaced
        float(q["latency_ms"]) / 1000 if "latency_ms" in q else st.latency,
        int(q.get("x_limit", st.x_limit)),
        int(q.get("x_window", st.x_window)),
    )
    return web.Response(status=204)


async def stats(request: web.Request) -> web.Response:
    st: State = request.app["state"]
    return _json(
        200,
        {
            "requests": st.requests,
            "rejected": st.rejected,
            "accounts": st.accounts,
            "first_request": st.first_request,
            "last_request": st.last_request,
            "x_429": st.x_429,
            "windows": st.windows,
            "crossed_sent": st.crossed_sent,
            "hooks": st.hooks,
            "hook_count": st.hook_count,
        },
    )


def make_app(
    latency: float = 0.0, x_limit: int = 1_000_000, x_window: int = 900
) -> web.Application:
    app = web.Application()
    app["state"] = State(latency, x_limit, x_window)
    app.router.add_get("/2/users/by", x_users_by)
    app.router.add_get("/xrpc/app.bsky.actor.getProfiles", bsky_profiles)
    app.router.add_get("/youtube/v3/channels", yt_channels)
    app.router.add_get("/mastodon/api/v1/accounts", mastodon_accounts)
    app.router.add_post("/hook", hook)
    app.router.add_post("/_bench/phase", set_phase)
    app.router.add_post("/_bench/reset", reset)
    app.router.add_get("/_bench/stats", stats)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--x-limit", type=int, default=1_000_000)
    parser.add_argument("--x-window", type=int, default=900)
    args = parser.parse_args()
    app = make_app(args.latency_ms / 1000, args.x_limit, args.x_window)
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
