"""A local fake YouTube Data API v3 (pytest-httpserver): channels.list, its quota and its errors."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from fakes import common
from fakes.common import json_response
from followerwatch.clock import Clock
from followerwatch.sources.youtube import quota_day

START = datetime(2026, 1, 1, tzinfo=UTC)
API_KEY = "AIzaSyFAKE-test-key_0123456789abcdefghi"
_FILTERS = ("id", "forHandle", "forUsername", "mine", "managedByMe", "categoryId")
_PARTS = {"id", "snippet", "statistics", "contentDetails", "brandingSettings", "status"}


def load(name: str) -> Any:
    """A response body from tests/fixtures/youtube."""
    return common.load("youtube", name)


def published(subscribers: int) -> str:
    """A subscriber count as YouTube publishes it: a string, 3 significant figures above 1,000."""
    if subscribers < 1_000:
        return str(subscribers)
    step = 10 ** (len(str(subscribers)) - 3)
    return str(subscribers // step * step)


def make_channel(
    i: int, subscribers: int | None = None, handle: str | None = None
) -> dict[str, Any]:
    """A plausible channel resource with distinct values per index."""
    return {
        "kind": "youtube#channel",
        "etag": f"etag{i}",
        "id": f"UCfake{i:018d}",
        "snippet": {
            "title": f"Channel {i}",
            "description": "",
            "customUrl": handle or f"@channel{i:03d}",
            "publishedAt": "2015-01-01T00:00:00Z",
        },
        "statistics": {
            "viewCount": str(100_000 + i),
            "subscriberCount": published(1_234 + 1_000 * i if subscribers is None else subscribers),
            "hiddenSubscriberCount": False,
            "videoCount": str(10 + i),
        },
    }


def error(status: int, reason: str, message: str, domain: str = "youtube.parameter") -> Response:
    """A Google API error body with one `errors[]` entry."""
    body = {
        "error": {
            "code": status,
            "message": message,
            "errors": [{"message": message, "domain": domain, "reason": reason}],
        }
    }
    return json_response(status, body)


@dataclass(frozen=True)
class Seen:
    """One request as the fake received it; `time` is the ManualClock at arrival."""

    path: str
    args: dict[str, str]
    time: datetime


class FakeYouTube:
    """Channels by id and handle, and a daily quota that resets at midnight Pacific."""

    load = staticmethod(load)
    make_channel = staticmethod(make_channel)

    def __init__(self, server: HTTPServer, clock: Clock) -> None:
        self.server = server
        self.clock = clock
        self.key = API_KEY
        self.channels: dict[str, dict[str, Any]] = {}
        self.quota = 10_000
        self.used = 0
        self.day = quota_day(clock.now())
        # Whether an empty answer leaves `items` out (True) or sends `items: []`.
        self.omit_empty_items = True
        self.canned: list[Response] = []
        self.seen: list[Seen] = []
        server.expect_request("/youtube/v3/channels", method="GET").respond_with_handler(
            self._channels
        )

    @property
    def base_url(self) -> str:
        """What YouTubeSource takes as base_url."""
        return self.server.url_for("/").rstrip("/")

    def add(self, *channels: dict[str, Any]) -> None:
        """Put channels in the fake's database."""
        for channel in channels:
            self.channels[channel["id"]] = channel

    def serve(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        """Queue one canned answer; str bodies are sent raw, anything else as JSON."""
        if isinstance(body, (bytes, str)):
            self.canned.append(Response(body, status=status, headers=headers))
        else:
            self.canned.append(json_response(status, body, headers))

    def _channels(self, request: Request) -> Response:
        now = self.clock.now()
        self.seen.append(Seen(request.path, dict(request.args), now))
        if self.canned:
            return self.canned.pop(0)
        args = request.args
        if "key" not in args:
            return json_response(403, load("missing_key.json"))
        if args["key"] != self.key:
            return json_response(400, load("key_invalid.json"))
        if quota_day(now) != self.day:
            self.day, self.used = quota_day(now), 0
        if self.used >= self.quota:
            return json_response(403, load("quota_exceeded.json"))
        # Like YouTube: even a rejected call costs its unit.
        self.used += 1
        parts = set(args.get("part", "").split(",")) - {""}
        if not parts:
            return error(400, "required", "Required parameter: part", "global")
        if parts - _PARTS:
            return error(400, "unknownPart", f"Unknown part: {sorted(parts - _PARTS)}")
        filters = [f for f in _FILTERS if f in args]
        if len(filters) > 1:
            return json_response(400, load("incompatible_parameters.json"))
        if not filters:
            return error(400, "missingRequiredParameter", "No filter selected.")
        if filters == ["id"]:
            ids = args["id"].split(",")
            if len(ids) > 50:
                return error(400, "invalidValue", "Too many ids; at most 50.")
            found = [self.channels[i] for i in dict.fromkeys(ids) if i in self.channels]
        elif filters == ["forHandle"]:
            wanted = args["forHandle"].removeprefix("@").lower()
            found = [
                c
                for c in self.channels.values()
                if c["snippet"].get("customUrl", "").removeprefix("@").lower() == wanted
            ][:1]
        else:
            found = []
        items = [_only(channel, parts) for channel in found]
        body: dict[str, Any] = {
            "kind": "youtube#channelListResponse",
            "etag": "fake-etag",
            "pageInfo": {"totalResults": len(items), "resultsPerPage": max(len(items), 5)},
        }
        if items or not self.omit_empty_items:
            body["items"] = items
        return json_response(200, body)


def _only(channel: dict[str, Any], parts: set[str]) -> dict[str, Any]:
    """The channel with only the requested parts, as `part=` selects them."""
    keep = {"kind", "etag", "id"} | parts
    return {k: v for k, v in channel.items() if k in keep}
