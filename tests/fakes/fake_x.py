"""A local fake X API v2 (pytest-httpserver) that answers as platform-apis.md documents X does."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from fakes import common
from fakes.common import json_response
from followerwatch.clock import Clock

START = datetime(2026, 1, 1, tzinfo=UTC)
TOKEN = "AAAAAAAAAAAAAAAAAAAAAtest%2Fbearer%2Btoken"
_USERNAME = re.compile(r"^[A-Za-z0-9_]{1,15}$")
_ID = re.compile(r"^[0-9]{1,19}$")
_WINDOW = 900


def load(name: str) -> Any:
    """A response body from tests/fixtures/x."""
    return common.load("x", name)


def make_user(i: int) -> dict[str, Any]:
    """A plausible user object with distinct counts per index."""
    return {
        "id": str(1_500_000_000 + i),
        "name": f"User {i}",
        "username": f"user_{i:03d}",
        "public_metrics": {
            "followers_count": 1_000 + 7 * i,
            "following_count": 10 + i,
            "tweet_count": 50 * i,
            "listed_count": i // 3,
            "like_count": 3 * i,
        },
    }


@dataclass(frozen=True)
class Seen:
    """One request as the fake server received it; `time` is the ManualClock at arrival."""

    path: str
    args: dict[str, str]
    authorization: str | None
    time: datetime


class FakeX:
    """Users, suspensions, protected accounts and a 300-per-15-min window, served like X."""

    load = staticmethod(load)
    make_user = staticmethod(make_user)

    def __init__(self, server: HTTPServer, clock: Clock, window: int = _WINDOW) -> None:
        self.server = server
        self.clock = clock
        # Seconds a rate-limit window lasts (X's 15 minutes; shorter to test several windows).
        self.window = window
        self.token = TOKEN
        self.users: dict[str, dict[str, Any]] = {}
        self.suspended: set[str] = set()
        self.protected: set[str] = set()
        self.limit = 300
        self.remaining = 300
        self.reset = int(clock.now().timestamp()) + window
        # Requests refused with 429 because the window's budget was spent.
        self.refusals = 0
        # One window per endpoint (X's own rule) instead of one for both, when set.
        self.per_endpoint = False
        self._windows: dict[str, tuple[int, int]] = {}
        self.limited_body = "rate_limited_code88.json"
        # Answers served, in order, instead of the model (a body the model would never produce).
        self.canned: list[Response] = []
        self.seen: list[Seen] = []
        server.expect_request("/2/users/by").respond_with_handler(self._by_usernames)
        server.expect_request("/2/users").respond_with_handler(self._by_ids)

    @property
    def base_url(self) -> str:
        """What XSource takes as base_url."""
        return self.server.url_for("/").rstrip("/")

    def add(self, *users: dict[str, Any]) -> None:
        """Put users in the fake's database."""
        for user in users:
            self.users[user["username"].lower()] = user

    def serve(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        """Queue one canned answer; `body` bytes/str are sent raw, anything else as JSON."""
        if isinstance(body, (bytes, str)):
            self.canned.append(Response(body, status=status, headers=headers))
        else:
            self.canned.append(json_response(status, body, headers))

    def rate_headers(self) -> dict[str, str]:
        """The three x-rate-limit-* headers for the current window."""
        return {
            "x-rate-limit-limit": str(self.limit),
            "x-rate-limit-remaining": str(max(self.remaining, 0)),
            "x-rate-limit-reset": str(self.reset),
        }

    def _by_usernames(self, request: Request) -> Response:
        return self._on_endpoint(
            request,
            lambda: self._answer(
                request, "usernames", _USERNAME, lambda v: self.users.get(v.lower())
            ),
        )

    def _by_ids(self, request: Request) -> Response:
        by_id = {u["id"]: u for u in self.users.values()}
        return self._on_endpoint(request, lambda: self._answer(request, "ids", _ID, by_id.get))

    def _on_endpoint(self, request: Request, answer: Callable[[], Response]) -> Response:
        """With `per_endpoint`, each endpoint has its own window, as X budgets them."""
        if not self.per_endpoint:
            return answer()
        self.remaining, self.reset = self._windows.get(
            request.path, (self.limit, int(self.clock.now().timestamp()) + self.window)
        )
        try:
            return answer()
        finally:
            self._windows[request.path] = (self.remaining, self.reset)

    def _answer(
        self,
        request: Request,
        param: str,
        pattern: re.Pattern[str],
        find: Callable[[str], dict[str, Any] | None],
    ) -> Response:
        now = self.clock.now()
        auth = request.headers.get("Authorization")
        self.seen.append(Seen(request.path, dict(request.args), auth, now))
        if self.canned:
            return self.canned.pop(0)
        if auth != f"Bearer {self.token}":
            return json_response(401, load("unauthorized.json"))
        if now.timestamp() >= self.reset:
            self.remaining = self.limit
            self.reset = int(now.timestamp()) + self.window
        if self.remaining <= 0:
            self.refusals += 1
            return json_response(429, load(self.limited_body), self.rate_headers())
        self.remaining -= 1
        values = request.args.get(param, "").split(",") if request.args.get(param) else []
        invalid = [v for v in values if not pattern.match(v)]
        if not 1 <= len(values) <= 100 or invalid:
            rejection = load("invalid_request.json")
            rejection["errors"][0]["parameters"] = {param: invalid or values}
            return json_response(400, rejection, self.rate_headers())
        # Like X: without public_metrics in user.fields, only id, name and username come back.
        metrics = "public_metrics" in request.args.get("user.fields", "").split(",")
        data: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for value in values:
            user = find(value)
            name = user["username"].lower() if user is not None else ""
            if user is None:
                detail = f"Could not find user with {param}: [{value}]."
                errors.append(self._error(param, value, "Not Found Error", detail, "api.x.com"))
            elif name in self.suspended:
                detail = f"User has been suspended: [{value}]."
                errors.append(self._error(param, value, "Forbidden", detail, "api.twitter.com"))
            elif name in self.protected:
                detail = f"Sorry, you are not authorized to see the user with id: [{user['id']}]."
                errors.append(self._error(param, value, "Forbidden", detail, "api.x.com"))
            elif metrics:
                data.append(user)
            else:
                data.append({k: user[k] for k in ("id", "name", "username")})
        body: dict[str, Any] = {}
        if data:
            body["data"] = data
        if errors:
            body["errors"] = errors
        return json_response(200, body, self.rate_headers())

    @staticmethod
    def _error(param: str, value: str, title: str, detail: str, host: str) -> dict[str, Any]:
        return {
            "value": value,
            "detail": detail,
            "title": title,
            "resource_type": "user",
            "parameter": param,
            "resource_id": value,
            "type": f"https://{host}/2/problems/resource-not-found",
        }
