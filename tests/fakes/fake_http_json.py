"""A local fake "any JSON API" for the generic source: a REST stats endpoint and a GraphQL one."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from fakes import common
from fakes.common import json_response
from followerwatch.clock import Clock

START = datetime(2026, 1, 1, tzinfo=UTC)
API_KEY = "k-2f9c1e7a55d04b1f"
BEARER = "graphql-bearer-77a1"
_WINDOW = 60


def load(name: str) -> Any:
    """A response body from tests/fixtures/http_json."""
    return common.load("http_json", name)


@dataclass(frozen=True)
class Seen:
    """One request as the fake received it; `time` is the ManualClock at arrival."""

    method: str
    path: str
    args: dict[str, str]
    headers: dict[str, str]
    body: str
    time: datetime


@dataclass
class FakeJsonApi:
    """Users keyed by login and id; X-RateLimit-* (epoch reset) with Retry-After on 429."""

    server: HTTPServer
    clock: Clock
    api_key: str = API_KEY
    bearer: str = BEARER
    limit: int = 100
    remaining: int = 100
    reset: int = 0
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    canned: list[Response] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)

    load = staticmethod(load)

    def __post_init__(self) -> None:
        self.reset = int(self.clock.now().timestamp()) + _WINDOW
        self.server.expect_request(
            re.compile(r"^/v1/users/[^/]+/stats$"), method="GET"
        ).respond_with_handler(self._by_login)
        self.server.expect_request(
            re.compile(r"^/v1/ids/[^/]+/stats$"), method="GET"
        ).respond_with_handler(self._by_id)
        self.server.expect_request("/graphql", method="POST").respond_with_handler(self._graphql)

    def url(self, path: str) -> str:
        """An absolute URL on the fake; `{handle}` and `{id}` stay as placeholders."""
        return self.server.url_for("/").rstrip("/") + path

    def add(self, login: str, uid: str, followers: Any, following: Any = 5, posts: Any = 9) -> None:
        """A user with its stats, served by login and by id."""
        self.users[login] = {
            "id": uid,
            "login": login,
            "stats": {"followers": followers, "following": following, "posts": posts},
        }

    def serve(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        """Queue one canned answer; str bodies are sent raw, anything else as JSON."""
        if isinstance(body, str):
            self.canned.append(Response(body, status=status, headers=headers))
        else:
            self.canned.append(json_response(status, body, headers))

    def rate_headers(self) -> dict[str, str]:
        """X-RateLimit-Limit/Remaining/Reset, the reset in epoch seconds."""
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(max(self.remaining, 0)),
            "X-RateLimit-Reset": str(self.reset),
        }

    def _gate(self, request: Request, auth_ok: bool) -> Response | None:
        self.seen.append(
            Seen(
                request.method,
                request.path,
                dict(request.args),
                dict(request.headers.items()),
                request.get_data(as_text=True),
                self.clock.now(),
            )
        )
        if self.canned:
            return self.canned.pop(0)
        if not auth_ok:
            return json_response(401, load("unauthorized.json"))
        now = int(self.clock.now().timestamp())
        if now >= self.reset:
            self.remaining, self.reset = self.limit, now + _WINDOW
        if self.remaining <= 0:
            headers = self.rate_headers() | {"Retry-After": str(self.reset - now)}
            return json_response(429, load("rate_limited.json"), headers)
        self.remaining -= 1
        return None

    def _stats(self, user: dict[str, Any] | None) -> Response:
        if user is None:
            return json_response(404, load("not_found.json"), self.rate_headers())
        return json_response(200, {"data": user, "meta": {}}, self.rate_headers())

    def _by_login(self, request: Request) -> Response:
        early = self._gate(request, request.headers.get("X-Api-Key") == self.api_key)
        login = request.path.split("/")[3]
        return early or self._stats(self.users.get(login))

    def _by_id(self, request: Request) -> Response:
        early = self._gate(request, request.headers.get("X-Api-Key") == self.api_key)
        uid = request.path.split("/")[3]
        return early or self._stats(next((u for u in self.users.values() if u["id"] == uid), None))

    def _graphql(self, request: Request) -> Response:
        early = self._gate(request, request.headers.get("Authorization") == f"Bearer {self.bearer}")
        if early is not None:
            return early
        if request.mimetype != "application/json":
            return json_response(415, {"message": "Content-Type must be application/json"})
        try:
            query = json.loads(request.get_data(as_text=True))
            login = query["variables"]["login"]
        except (ValueError, KeyError, TypeError):
            return json_response(400, {"message": "Problems parsing JSON"})
        user = self.users.get(login)
        if user is None:
            body = load("graphql_null_user.json")
        else:
            body = {
                "data": {
                    "user": {
                        "databaseId": int(user["id"].removeprefix("u-")),
                        "login": login,
                        "followers": {"totalCount": user["stats"]["followers"]},
                    }
                }
            }
        return json_response(200, body, self.rate_headers())
