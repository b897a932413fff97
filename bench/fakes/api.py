"""One fast aiohttp server faking X, Bluesky, YouTube and Mastodon for the benchmark.

Response shapes follow tests/fakes/fake_*.py (which follow docs/platform-apis.md), but accounts
are not stored: every id or handle encodes its index `i`, and the count is computed from it, so
100,000 accounts cost nothing to set up. Batch limits are enforced as the platforms do (a batch
over the maximum is a 400/422). Each platform's single-account lookup is there too (YouTube's
is `channels?id=` with one id), for the peer baseline. Optional: latency per request, and X's
rate limit with X's own `x-rate-limit-*` headers (scaled down in time by `--x-window`). A
`/hook` route is the webhook receiver of the alert-latency scenario; `/_bench/*` control and
report.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

from aiohttp import web

from bench.fakes.shapes import (
    BUMP,
    LIMITS,
    MASTODON_ID0,
    bsky_headers,
    bsky_profile,
    channel_id,
    mastodon_account,
    mastodon_headers,
    plc,
    plc_index,
    published,
    x_user,
)

__all__ = ["LIMITS", "MASTODON_ID0", "channel_id", "make_app", "plc"]


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


STATE = web.AppKey("state", State)


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


def _x_refused(request: web.Request) -> web.Response | None:
    """X's answer before any lookup: 401 without the bearer token, 429 past the window's budget."""
    if request.headers.get("Authorization") != "Bearer bench-x-token":
        return _json(401, {"title": "Unauthorized", "type": "about:blank", "status": 401})
    limited: web.Response | None = request.app[STATE].x_gate()
    return limited


async def x_users_by(request: web.Request) -> web.Response:
    """GET /2/users/by?usernames=u1,u2&user.fields=public_metrics (X API v2)."""
    st = request.app[STATE]
    refused = _x_refused(request)
    if refused is not None:
        return refused
    names = [n for n in request.query.get("usernames", "").split(",") if n]
    if not 1 <= len(names) <= LIMITS["x"]:
        st.rejected["x"] += 1
        body = {"errors": [{"parameters": {"usernames": names}, "message": "1..100 usernames"}]}
        return _json(400, {**body, "title": "Invalid Request"}, st.x_headers())
    indexes = _ints([n.lower() for n in names], "u")
    if st.latency:
        await asyncio.sleep(st.latency)
    data = [x_user(i, st.followers(i)) for i in indexes]
    st.count("x", indexes)
    return _json(200, {"data": data}, st.x_headers())


async def bsky_profiles(request: web.Request) -> web.Response:
    """GET /xrpc/app.bsky.actor.getProfiles?actors=did&actors=did (public AppView)."""
    st = request.app[STATE]
    actors = request.query.getall("actors", [])
    if len(actors) > LIMITS["bluesky"]:
        st.rejected["bluesky"] += 1
        body = {"error": "InvalidRequest", "message": "Error: actors must not have more than 25"}
        return _json(400, body)
    indexes = [i for i in (plc_index(a) for a in actors) if i is not None]
    if st.latency:
        await asyncio.sleep(st.latency)
    profiles = [bsky_profile(i, st.followers(i)) for i in indexes]
    st.count("bluesky", indexes)
    return _json(200, {"profiles": profiles}, bsky_headers())


async def yt_channels(request: web.Request) -> web.Response:
    """GET /youtube/v3/channels?part=statistics,snippet&id=UC…,UC…&key=… (Data API v3)."""
    st = request.app[STATE]
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
                "subscriberCount": published(st.followers(i)),
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
    st = request.app[STATE]
    ids = list(dict.fromkeys(request.query.getall("id[]", [])))
    if len(ids) > LIMITS["mastodon"]:
        st.rejected["mastodon"] += 1
        return _json(422, {"error": "Validation failed: too many ids"})
    indexes = [int(v) - MASTODON_ID0 for v in ids if v.isdigit() and int(v) >= MASTODON_ID0]
    if st.latency:
        await asyncio.sleep(st.latency)
    found = [
        mastodon_account(i, st.followers(i))
        for i in sorted(indexes, reverse=True)  # the database's order, not the request's
    ]
    st.count("mastodon", indexes)
    return _json(200, found, mastodon_headers())


# The single-account lookups, one account per request: what the peer baseline polls.


async def x_user_by(request: web.Request) -> web.Response:
    """GET /2/users/by/username/:username: `data` is one object, a missing user only `errors`."""
    st = request.app[STATE]
    refused = _x_refused(request)
    if refused is not None:
        return refused
    name = request.match_info["username"]
    indexes = _ints([name.lower()], "u")
    if st.latency:
        await asyncio.sleep(st.latency)
    st.count("x", indexes)
    if not indexes:
        err = {
            "value": name,
            "detail": f"Could not find user with usernames: [{name}].",
            "title": "Not Found Error",
            "resource_type": "user",
            "parameter": "username",
            "resource_id": name,
            "type": "https://api.x.com/2/problems/resource-not-found",
        }
        return _json(200, {"errors": [err]}, st.x_headers())
    return _json(200, {"data": x_user(indexes[0], st.followers(indexes[0]))}, st.x_headers())


async def bsky_profile_one(request: web.Request) -> web.Response:
    """GET /xrpc/app.bsky.actor.getProfile?actor=did: one profile, or 400 when not found."""
    st = request.app[STATE]
    i = plc_index(request.query.get("actor", ""))
    if st.latency:
        await asyncio.sleep(st.latency)
    st.count("bluesky", [] if i is None else [i])
    if i is None:
        return _json(400, {"error": "InvalidRequest", "message": "Profile not found"})
    return _json(200, bsky_profile(i, st.followers(i)), bsky_headers())


async def mastodon_account_one(request: web.Request) -> web.Response:
    """GET /mastodon/api/v1/accounts/:id: one Account, or 404 `Record not found`."""
    st = request.app[STATE]
    v = request.match_info["id"]
    i = int(v) - MASTODON_ID0 if v.isdigit() and int(v) >= MASTODON_ID0 else None
    if st.latency:
        await asyncio.sleep(st.latency)
    st.count("mastodon", [] if i is None else [i])
    if i is None:
        return _json(404, {"error": "Record not found"})
    return _json(200, mastodon_account(i, st.followers(i)), mastodon_headers())


async def hook(request: web.Request) -> web.Response:
    """The webhook receiver: remembers when each account's first alert arrived."""
    st = request.app[STATE]
    arrived = time.time()
    event = (await request.json()).get("event", {})
    st.hook_count += 1
    st.hooks.setdefault(f"{event.get('platform')}:{event.get('account')}", arrived)
    return web.Response(status=204)


async def set_phase(request: web.Request) -> web.Response:
    st = request.app[STATE]
    st.phase = int(request.query["n"])
    st.crossed_sent.clear()
    return web.Response(status=204)


async def reset(request: web.Request) -> web.Response:
    st = request.app[STATE]
    q = request.query
    st.__init__(  # type: ignore[misc]  # in place: a started app's state may not be replaced
        float(q["latency_ms"]) / 1000 if "latency_ms" in q else st.latency,
        int(q.get("x_limit", st.x_limit)),
        int(q.get("x_window", st.x_window)),
    )
    return web.Response(status=204)


async def stats(request: web.Request) -> web.Response:
    st = request.app[STATE]
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
    app[STATE] = State(latency, x_limit, x_window)
    app.router.add_get("/2/users/by", x_users_by)
    app.router.add_get("/xrpc/app.bsky.actor.getProfiles", bsky_profiles)
    app.router.add_get("/youtube/v3/channels", yt_channels)
    app.router.add_get("/mastodon/api/v1/accounts", mastodon_accounts)
    app.router.add_get("/2/users/by/username/{username}", x_user_by)
    app.router.add_get("/xrpc/app.bsky.actor.getProfile", bsky_profile_one)
    app.router.add_get("/mastodon/api/v1/accounts/{id}", mastodon_account_one)
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
