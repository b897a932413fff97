"""A local fake Mastodon instance (pytest-httpserver) that answers as platform-apis.md documents."""

from __future__ import annotations

import copy
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
TOKEN = "mastodon-test-token-Zk9Pq"
_USERNAME = re.compile(r"^[A-Za-z0-9_]+([.-]+[A-Za-z0-9_]+)*$")
_WINDOW = 300
_BATCH_LIMIT = 40


def load(name: str) -> Any:
    """A response body from tests/fixtures/mastodon."""
    return common.load("mastodon", name)


@dataclass(frozen=True)
class Seen:
    """One request as the fake received it; `time` is the ManualClock at arrival."""

    path: str
    args: dict[str, list[str]]
    authorization: str | None
    time: datetime


class FakeMastodon:
    """One instance, served under `prefix` so several can share one HTTPServer.

    `batch=False` is a server before 4.3: `GET /api/v1/accounts` does not exist there.
    """

    load = staticmethod(load)

    def __init__(
        self,
        server: HTTPServer,
        clock: Clock,
        domain: str = "mastodon.social",
        *,
        prefix: str = "",
        batch: bool = True,
    ) -> None:
        self.server = server
        self.clock = clock
        self.domain = domain
        self.prefix = prefix.rstrip("/")
        self.batch = batch
        self.accounts: dict[str, dict[str, Any]] = {}
        self.suspended: set[str] = set()
        self.pending: set[str] = set()
        self.tokens: set[str] = {TOKEN}
        self.whitelist = False
        # Real servers send X-RateLimit-* whenever a throttle applied; False is the bare variant.
        self.rate_headers_on = True
        self.limit = 300
        self.remaining = 300
        self.reset = _window_end(clock.now())
        self.canned: list[Response] = []
        self.seen: list[Seen] = []
        server.expect_request(self.prefix + "/api/v1/accounts", method="GET").respond_with_handler(
            self._batch
        )
        server.expect_request(self.prefix + "/api/v1/accounts/lookup").respond_with_handler(
            self._lookup
        )

    @property
    def base_url(self) -> str:
        """What `instance_urls` maps the domain to."""
        return self.server.url_for(self.prefix or "/").rstrip("/")

    def make_account(self, i: int, **overrides: Any) -> dict[str, Any]:
        """A plausible local Account entity with distinct counts per index."""
        username = overrides.pop("username", f"user{i}")
        account = {
            "id": str(109_000_000_000_000_000 + i),
            "username": username,
            "acct": username,
            "display_name": f"User {i}",
            "locked": False,
            "bot": False,
            "created_at": "2022-11-01T00:00:00.000Z",
            "note": "",
            "url": f"https://{self.domain}/@{username}",
            "uri": f"https://{self.domain}/users/{username}",
            "followers_count": 2_000 + 11 * i,
            "following_count": 20 + i,
            "statuses_count": 300 * i,
            "last_status_at": "2025-12-31",
            "emojis": [],
            "fields": [],
        }
        account.update(overrides)
        return account

    def add(self, *accounts: dict[str, Any]) -> None:
        """Put accounts in the instance's database."""
        for account in accounts:
            self.accounts[account["id"]] = account

    def handle(self, account: dict[str, Any]) -> str:
        """The watchlist handle of one of this instance's accounts."""
        return f"{account['username']}@{self.domain}"

    def serve(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        """Queue one canned answer; `body` bytes/str are sent raw, anything else as JSON."""
        if isinstance(body, (bytes, str)):
            self.canned.append(Response(body, status=status, headers=headers))
        else:
            self.canned.append(json_response(status, body, headers))

    def rate_headers(self) -> dict[str, str]:
        """X-RateLimit-*, the reset as Mastodon writes it (ISO 8601, microseconds, Z)."""
        if not self.rate_headers_on:
            return {}
        stamp = datetime.fromtimestamp(self.reset, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(max(self.remaining, 0)),
            "X-RateLimit-Reset": stamp,
        }

    def _view(self, account: dict[str, Any]) -> dict[str, Any]:
        """The entity as the serializer renders it: suspended ones blanked, with counts of 0."""
        if account["id"] not in self.suspended:
            return account
        view = copy.deepcopy(account)
        view.update(
            suspended=True,
            display_name="",
            note="",
            fields=[],
            emojis=[],
            followers_count=0,
            following_count=0,
            statuses_count=0,
        )
        return view

    def _gate(self, request: Request) -> Response | None:
        """Rack::Attack first, then the token check that `authorize_if_got_token!` does."""
        now = self.clock.now()
        auth = request.headers.get("Authorization")
        self.seen.append(Seen(request.path, request.args.to_dict(flat=False), auth, now))
        if self.canned:
            return self.canned.pop(0)
        if now.timestamp() >= self.reset:
            self.remaining = self.limit
            self.reset = _window_end(now)
        if self.remaining <= 0:
            return json_response(429, load("too_many_requests.json"), self.rate_headers())
        self.remaining -= 1
        if auth is not None and (not auth.startswith("Bearer ") or auth[7:] not in self.tokens):
            return json_response(401, load("invalid_token.json"), self.rate_headers())
        if self.whitelist and auth is None:
            return json_response(401, load("authenticated_user_required.json"), self.rate_headers())
        return None

    def _batch(self, request: Request) -> Response:
        stop = self._gate(request)
        if stop is not None:
            return stop
        if not self.batch:
            # Before 4.3 the route is unknown; the 404 page is not necessarily JSON.
            return Response(
                "<html><body>The page you were looking for doesn't exist.</body></html>",
                status=404,
                content_type="text/html",
                headers=self.rate_headers(),
            )
        # Rails keeps only `id[]=` values; `id=1` or `id[0]=1` count as no ids at all.
        ids = list(dict.fromkeys(request.args.getlist("id[]")))
        if len(ids) > _BATCH_LIMIT:
            return json_response(422, load("validation_error.json"), self.rate_headers())
        found = [
            self._view(self.accounts[i])
            for i in ids
            if i in self.accounts and i not in self.pending
        ]
        # Account.where(id: …) comes back in the database's order, not the request's.
        found.sort(key=lambda a: int(a["id"]), reverse=True)
        return json_response(200, found, self.rate_headers())

    def _lookup(self, request: Request) -> Response:
        stop = self._gate(request)
        if stop is not None:
            return stop
        acct = request.args.get("acct", "")
        username, _, domain = acct.partition("@")
        local = not domain or domain.lower() == self.domain.lower()
        match = [
            a
            for a in self.accounts.values()
            if local
            and _USERNAME.match(username)
            and a["username"].lower() == username.lower()
            and a["id"] not in self.pending
        ]
        if not match:
            return json_response(404, load("record_not_found.json"), self.rate_headers())
        return json_response(200, self._view(match[0]), self.rate_headers())


def _window_end(now: datetime) -> int:
    """Rack::Attack windows are aligned to multiples of the period."""
    stamp = int(now.timestamp())
    return stamp + _WINDOW - stamp % _WINDOW
