"""A local fake Bluesky AppView (pytest-httpserver) that answers as platform-apis.md documents."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from fakes import common
from fakes.common import json_response
from followerwatch.clock import Clock

START = datetime(2026, 1, 1, tzinfo=UTC)
_BASE32 = "abcdefghijklmnopqrstuvwxyz234567"
_DID = re.compile(r"^did:(plc:[a-z2-7]{24}|web:[A-Za-z0-9.-]+(%3[Aa][0-9]+)?)$")
_HANDLE = re.compile(
    r"^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$"
)
_MAX_ACTORS = 25
_WINDOW = 300


def load(name: str) -> Any:
    """A response body from tests/fixtures/bluesky."""
    return common.load("bluesky", name)


def plc(i: int) -> str:
    """A syntactically valid did:plc for index i."""
    digits = ""
    while True:
        i, rest = divmod(i, 32)
        digits = _BASE32[rest] + digits
        if i == 0:
            break
    return "did:plc:" + digits.rjust(24, "a")


@dataclass(frozen=True)
class Seen:
    """One request as the fake received it; `time` is the ManualClock at arrival."""

    path: str
    args: dict[str, list[str]]
    time: datetime


class FakeBluesky:
    """Profiles keyed by DID, with handles, takedowns, deactivations and a rate-limit window."""

    load = staticmethod(load)

    def __init__(self, server: HTTPServer, clock: Clock) -> None:
        self.server = server
        self.clock = clock
        self.profiles: dict[str, dict[str, Any]] = {}
        self.takedown: set[str] = set()
        self.deactivated: set[str] = set()
        self.require_auth = False
        self.limit = 3000
        self.remaining = 3000
        self.reset = int(clock.now().timestamp()) + _WINDOW
        # "epoch" as the AppView sends it; "delta" is the IETF draft's seconds-from-now form.
        self.reset_style = "epoch"
        self.canned: list[Response] = []
        self.seen: list[Seen] = []
        server.expect_request("/xrpc/app.bsky.actor.getProfiles").respond_with_handler(
            self._get_profiles
        )
        server.expect_request("/xrpc/app.bsky.actor.getProfile").respond_with_handler(
            self._get_profile
        )

    @property
    def base_url(self) -> str:
        """What BlueskySource takes as base_url."""
        return self.server.url_for("/").rstrip("/")

    @staticmethod
    def make_profile(i: int, **overrides: Any) -> dict[str, Any]:
        """A plausible profileViewDetailed with distinct counts per index."""
        profile = {
            "did": plc(1_000 + i),
            "handle": f"user{i}.bsky.social",
            "displayName": f"User {i}",
            "labels": [],
            "createdAt": "2024-02-06T00:00:00.000Z",
            "indexedAt": "2025-12-31T00:00:00.000Z",
            "followersCount": 500 + 13 * i,
            "followsCount": 40 + i,
            "postsCount": 25 * i,
        }
        profile.update(overrides)
        return profile

    def add(self, *profiles: dict[str, Any]) -> None:
        """Put profiles in the AppView's index."""
        for profile in profiles:
            self.profiles[profile["did"]] = profile

    def serve(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        """Queue one canned answer; `body` bytes/str are sent raw, anything else as JSON."""
        if isinstance(body, (bytes, str)):
            self.canned.append(Response(body, status=status, headers=headers))
        else:
            self.canned.append(json_response(status, body, headers))

    def rate_headers(self) -> dict[str, str]:
        """RateLimit-*, the reset as epoch seconds (or seconds from now, for the variant)."""
        now = int(self.clock.now().timestamp())
        reset = self.reset if self.reset_style == "epoch" else max(self.reset - now, 0)
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(max(self.remaining, 0)),
            "RateLimit-Reset": str(reset),
            "RateLimit-Policy": f"{self.limit};w={_WINDOW}",
        }

    def _resolve(self, actor: str) -> str | None:
        """The DID an actor names, if the index knows it (invalid handles resolve to nothing)."""
        if actor.startswith("did:"):
            return actor if actor in self.profiles else None
        for did, profile in self.profiles.items():
            if profile["handle"] != "handle.invalid" and profile["handle"].lower() == actor.lower():
                return did
        return None

    def _gate(self, request: Request) -> Response | None:
        now = self.clock.now()
        self.seen.append(Seen(request.path, request.args.to_dict(flat=False), now))
        if self.canned:
            return self.canned.pop(0)
        if self.require_auth and "Authorization" not in request.headers:
            return json_response(401, load("auth_missing.json"))
        if now.timestamp() >= self.reset:
            self.remaining = self.limit
            self.reset = int(now.timestamp()) + _WINDOW
        if self.remaining <= 0:
            return json_response(429, load("rate_limit_exceeded.json"), self.rate_headers())
        self.remaining -= 1
        return None

    def _invalid(self, actors: list[str], name: str) -> Response | None:
        for index, actor in enumerate(actors):
            if not (_DID.match(actor) or _HANDLE.match(actor)):
                body = {
                    "error": "InvalidRequest",
                    "message": f"Error: {name}/{index} must be a valid did or a handle",
                }
                return json_response(400, body, self.rate_headers())
        return None

    def _get_profiles(self, request: Request) -> Response:
        stop = self._gate(request)
        if stop is not None:
            return stop
        actors = request.args.getlist("actors")
        if not actors:
            body = {
                "error": "InvalidRequest",
                "message": 'Error: Params must have the property "actors"',
            }
            return json_response(400, body, self.rate_headers())
        if len(actors) > _MAX_ACTORS:
            return json_response(400, load("too_many_actors.json"), self.rate_headers())
        invalid = self._invalid(actors, "actors")
        if invalid is not None:
            return invalid
        out: list[dict[str, Any]] = []
        for actor in actors:
            did = self._resolve(actor)
            # Missing, taken-down and deactivated accounts are left out without a word.
            if did is None or did in self.takedown or did in self.deactivated:
                continue
            if all(p["did"] != did for p in out):
                out.append(self.profiles[did])
        return json_response(200, {"profiles": out}, self.rate_headers())

    def _get_profile(self, request: Request) -> Response:
        stop = self._gate(request)
        if stop is not None:
            return stop
        actor = request.args.get("actor", "")
        invalid = self._invalid([actor], "actor")
        if invalid is not None:
            return invalid
        did = self._resolve(actor)
        if did is None:
            return json_response(400, load("profile_not_found.json"), self.rate_headers())
        if did in self.takedown:
            return json_response(400, load("account_takedown.json"), self.rate_headers())
        if did in self.deactivated:
            return json_response(400, load("account_deactivated.json"), self.rate_headers())
        return json_response(200, self.profiles[did], self.rate_headers())
