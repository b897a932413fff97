"""A local fake Twitch (id.twitch.tv token endpoint + Helix) answering as platform-apis.md says."""

from __future__ import annotations

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
CLIENT_ID = "wbmytr93xzw8zbg0p1izqyzzc5mbiz"
CLIENT_SECRET = "s3cr3t-client-secret-value"
USER_TOKEN = "user-access-token-9f8e7d"
_LOGIN = re.compile(r"^[A-Za-z0-9_]{1,25}$")
_ID = re.compile(r"^[0-9]{1,20}$")
_WINDOW = 60


def load(name: str) -> Any:
    """A response body from tests/fixtures/twitch."""
    return common.load("twitch", name)


def make_user(i: int) -> dict[str, Any]:
    """A plausible Helix user object with a distinct id and login per index."""
    return {
        "id": str(10_000_000 + i),
        "login": f"user_{i:03d}",
        "display_name": f"User_{i:03d}",
        "type": "",
        "broadcaster_type": "affiliate" if i % 2 else "",
        "description": "",
        "profile_image_url": "",
        "offline_image_url": "",
        "view_count": 0,
        "created_at": "2020-01-01T00:00:00Z",
    }


@dataclass(frozen=True)
class Seen:
    """One request as the fake received it; `time` is the ManualClock at arrival."""

    method: str
    path: str
    args: list[tuple[str, str]]
    authorization: str | None
    client_id: str | None
    form: dict[str, str]
    time: datetime

    def values(self, name: str) -> list[str]:
        """Every value of a repeated query parameter."""
        return [v for k, v in self.args if k == name]


@dataclass
class Bucket:
    """One token's 800-points-per-minute budget."""

    remaining: int
    reset: int
    limit: int = 800


@dataclass
class FakeTwitch:
    """Users, follower totals, app tokens and per-token rate buckets, served like Twitch."""

    server: HTTPServer
    clock: Clock
    client_id: str = CLIENT_ID
    client_secret: str = CLIENT_SECRET
    user_token: str = USER_TOKEN
    token_lifetime: int = 5_011_271
    # Twitch documents a user token for channels/followers; set False to make it refuse app tokens.
    app_token_gets_followers: bool = True
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    totals: dict[str, int] = field(default_factory=dict)
    # Banned users: helix/users omits them, yet channels/followers answers 200 with total 0.
    banned: set[str] = field(default_factory=set)
    app_tokens: dict[str, datetime] = field(default_factory=dict)
    buckets: dict[str, Bucket] = field(default_factory=dict)
    canned: list[Response] = field(default_factory=list)
    canned_token: list[Response] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)

    load = staticmethod(load)
    make_user = staticmethod(make_user)

    def __post_init__(self) -> None:
        self.server.expect_request("/oauth2/token", method="POST").respond_with_handler(self._token)
        self.server.expect_request("/helix/users").respond_with_handler(self._users)
        self.server.expect_request("/helix/channels/followers").respond_with_handler(
            self._followers
        )

    @property
    def base_url(self) -> str:
        """What TwitchSource takes as both id_url and api_url."""
        return self.server.url_for("/").rstrip("/")

    def add(self, *users: dict[str, Any], followers: int | None = None) -> None:
        """Put users in the fake's database, each with its follower total."""
        for index, user in enumerate(users):
            self.users[user["id"]] = user
            self.totals[user["id"]] = followers if followers is not None else 1_000 + 7 * index

    def bucket(self, kind: str) -> Bucket:
        """The rate bucket of "app" (every app token) or "user" (the user token)."""
        now = int(self.clock.now().timestamp())
        return self.buckets.setdefault(kind, Bucket(800, now + _WINDOW))

    def serve(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        """Queue one canned Helix answer; str bodies are sent raw, anything else as JSON."""
        self.canned.append(_response(status, body, headers))

    def serve_token(self, status: int, body: Any) -> None:
        """Queue one canned token-endpoint answer."""
        self.canned_token.append(_response(status, body, None))

    def helix_seen(self, path: str = "") -> list[Seen]:
        """Helix requests received, optionally only those to one path."""
        return [s for s in self.seen if s.path.startswith("/helix" + path)]

    def _record(self, request: Request) -> Seen:
        seen = Seen(
            request.method,
            request.path,
            list(request.args.items(multi=True)),
            request.headers.get("Authorization"),
            request.headers.get("Client-Id"),
            dict(request.form),
            self.clock.now(),
        )
        self.seen.append(seen)
        return seen

    def _token(self, request: Request) -> Response:
        seen = self._record(request)
        if self.canned_token:
            return self.canned_token.pop(0)
        form = {**dict(request.args), **seen.form}
        if form.get("client_id") != self.client_id:
            return json_response(400, load("token_invalid_client.json"))
        if form.get("client_secret") != self.client_secret:
            return json_response(403, load("token_invalid_secret.json"))
        if form.get("grant_type") != "client_credentials":
            return json_response(400, {"status": 400, "message": "unsupported grant type"})
        token = f"app-token-{len(self.app_tokens) + 1}"
        self.app_tokens[token] = self.clock.now()
        return json_response(
            200, {"access_token": token, "expires_in": self.token_lifetime, "token_type": "bearer"}
        )

    def _credential(self, seen: Seen) -> str | None:
        """ "app", "user", or None for a token Twitch would refuse."""
        auth = seen.authorization or ""
        token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else ""
        if token == self.user_token:
            return "user"
        issued = self.app_tokens.get(token)
        if issued is not None and (self.clock.now() - issued).total_seconds() < self.token_lifetime:
            return "app"
        return None

    def _gate(self, seen: Seen) -> tuple[str | None, Response | None]:
        """The credential, or the error Helix answers before looking at parameters."""
        if self.canned:
            return None, self.canned.pop(0)
        if seen.client_id is None:
            body = {"error": "Unauthorized", "status": 401, "message": "Client ID is missing"}
            return None, json_response(401, body)
        kind = self._credential(seen)
        if kind is None:
            return None, json_response(401, load("unauthorized.json"))
        if seen.client_id != self.client_id:
            message = "Client ID and OAuth token do not match"
            return None, json_response(
                401, {"error": "Unauthorized", "status": 401, "message": message}
            )
        bucket = self.bucket(kind)
        now = int(self.clock.now().timestamp())
        if now >= bucket.reset:
            bucket.remaining, bucket.reset = bucket.limit, now + _WINDOW
        if bucket.remaining <= 0:
            return kind, json_response(429, load("rate_limited.json"), self.rate_headers(kind))
        bucket.remaining -= 1
        return kind, None

    def rate_headers(self, kind: str) -> dict[str, str]:
        """Ratelimit-Limit/Remaining/Reset (epoch seconds) of one bucket."""
        bucket = self.bucket(kind)
        return {
            "Ratelimit-Limit": str(bucket.limit),
            "Ratelimit-Remaining": str(max(bucket.remaining, 0)),
            "Ratelimit-Reset": str(bucket.reset),
        }

    def _users(self, request: Request) -> Response:
        seen = self._record(request)
        kind, early = self._gate(seen)
        if early is not None or kind is None:
            return early if early is not None else json_response(500, {})
        logins, ids = seen.values("login"), seen.values("id")
        bad = [v for v in logins if not _LOGIN.match(v)] + [v for v in ids if not _ID.match(v)]
        if not 1 <= len(logins) + len(ids) <= 100 or bad:
            return json_response(400, load("bad_request.json"), self.rate_headers(kind))
        wanted_logins = {v.lower() for v in logins}
        data = [
            u
            for uid, u in self.users.items()
            if uid not in self.banned and (uid in ids or u["login"] in wanted_logins)
        ]
        return json_response(200, {"data": data}, self.rate_headers(kind))

    def _followers(self, request: Request) -> Response:
        seen = self._record(request)
        kind, early = self._gate(seen)
        if early is not None or kind is None:
            return early if early is not None else json_response(500, {})
        if kind == "app" and not self.app_token_gets_followers:
            body = {"error": "Unauthorized", "status": 401, "message": "Missing User OAUTH Token"}
            return json_response(401, body, self.rate_headers(kind))
        broadcaster = seen.values("broadcaster_id")
        first = seen.values("first") or ["20"]
        if len(broadcaster) != 1 or not _ID.match(broadcaster[0]):
            body = {
                "error": "Bad Request",
                "status": 400,
                "message": 'Missing required parameter "broadcaster_id"',
            }
            return json_response(400, body, self.rate_headers(kind))
        if not first[0].isdigit() or not 1 <= int(first[0]) <= 100:
            body = {
                "error": "Bad Request",
                "status": 400,
                "message": 'The parameter "first" was malformed',
            }
            return json_response(400, body, self.rate_headers(kind))
        # Unknown and banned channels still answer 200 with a total of 0: not a real count.
        uid = broadcaster[0]
        total = 0 if uid in self.banned else self.totals.get(uid, 0)
        return json_response(
            200, {"total": total, "data": [], "pagination": {}}, self.rate_headers(kind)
        )


def _response(status: int, body: Any, headers: dict[str, str] | None) -> Response:
    if isinstance(body, (bytes, str)):
        return Response(body, status=status, headers=headers)
    return json_response(status, body, headers)
