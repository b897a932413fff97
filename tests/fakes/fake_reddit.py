"""A local fake Reddit (token endpoint, OAuth host, public `.json` pages) per platform-apis.md."""

from __future__ import annotations

import base64
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
CLIENT_ID = "p-jcoLKBynTLew"
CLIENT_SECRET = "gko_LXELoV07ZBNUXrvWZfzE3aI"
USER_AGENT = "linux:followerwatch-tests:0.1.0 (by /u/followerwatch_ci)"
_NAME = re.compile(r"^[A-Za-z0-9_]{2,21}$")
_T5 = re.compile(r"^t5_[0-9a-z]{1,13}$")
# Agents Reddit throttles on sight: httpx's default and the shared client's generic one.
_GENERIC_AGENTS = ("python-httpx/", "followerwatch/")
_WINDOW = 600
TOO_MANY_HTML = (
    "<!doctype html><html><head><title>Too Many Requests</title></head><body>"
    "<h1>whoa there, pardner!</h1><p>we're sorry, but you appear to be a bot and we've seen too "
    "many requests from you lately.</p></body></html>"
)


def load(name: str) -> Any:
    """A response body from tests/fixtures/reddit."""
    return common.load("reddit", name)


def make_sub(i: int) -> dict[str, Any]:
    """A plausible t5 object with a distinct name, id and subscriber count per index."""
    return {
        "display_name": f"Sub_{i:03d}",
        "display_name_prefixed": f"r/Sub_{i:03d}",
        "title": f"Subreddit {i}",
        "name": f"t5_{0x2A0000 + i:x}",
        "id": f"{0x2A0000 + i:x}",
        "subscribers": 1_000 + 7 * i,
        "subreddit_type": "public",
        "quarantine": False,
        "over18": False,
    }


@dataclass(frozen=True)
class Seen:
    """One request as the fake received it; `time` is the ManualClock at arrival."""

    method: str
    path: str
    args: dict[str, str]
    authorization: str | None
    user_agent: str | None
    time: datetime


@dataclass
class Window:
    """A 10-minute request budget, as Reddit reports it."""

    limit: int
    used: int = 0
    reset: int = 0


@dataclass
class FakeReddit:
    """Subreddits of every kind, app tokens and per-host windows, served like Reddit."""

    server: HTTPServer
    clock: Clock
    client_id: str = CLIENT_ID
    client_secret: str = CLIENT_SECRET
    token_lifetime: int = 86_400
    max_names: int = 100
    # Whether /api/info lists a private subreddit (as a stub without subscribers) or omits it.
    info_lists_private: bool = False
    subs: dict[str, dict[str, Any]] = field(default_factory=dict)
    # "private", "quarantined", "gated" or "banned"; anything else is public.
    status: dict[str, str] = field(default_factory=dict)
    tokens: dict[str, datetime] = field(default_factory=dict)
    windows: dict[str, Window] = field(default_factory=dict)
    canned: list[Response] = field(default_factory=list)
    canned_token: list[Response] = field(default_factory=list)
    seen: list[Seen] = field(default_factory=list)

    load = staticmethod(load)
    make_sub = staticmethod(make_sub)

    def __post_init__(self) -> None:
        self.server.expect_request("/api/v1/access_token", method="POST").respond_with_handler(
            self._token
        )
        self.server.expect_request(re.compile(r"^/api/info(\.json)?$")).respond_with_handler(
            self._info
        )
        self.server.expect_request(re.compile(r"^/r/[^/]+/about(\.json)?$")).respond_with_handler(
            self._about
        )

    @property
    def base_url(self) -> str:
        """What RedditSource takes as both www_url and oauth_url."""
        return self.server.url_for("/").rstrip("/")

    def add(self, *subs: dict[str, Any], status: str = "public") -> None:
        """Put subreddits in the fake's database."""
        for sub in subs:
            key = sub["display_name"].lower()
            self.subs[key] = sub
            self.status[key] = status

    def window(self, host: str) -> Window:
        """The budget of "oauth" (1000 per 10 min per app) or "www" (100 per 10 min per IP)."""
        now = int(self.clock.now().timestamp())
        window = self.windows.setdefault(host, Window(1000 if host == "oauth" else 100))
        if now >= window.reset:
            window.used, window.reset = 0, now + _WINDOW
        return window

    def rate_headers(self, host: str) -> dict[str, str]:
        """X-Ratelimit-* as Reddit sends them: a float remaining and a reset in seconds."""
        window = self.window(host)
        now = int(self.clock.now().timestamp())
        return {
            "X-Ratelimit-Used": str(window.used),
            "X-Ratelimit-Remaining": f"{max(window.limit - window.used, 0):.1f}",
            "X-Ratelimit-Reset": str(window.reset - now),
        }

    def serve(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        """Queue one canned API answer; str bodies are sent raw, anything else as JSON."""
        self.canned.append(_response(status, body, headers))

    def serve_token(self, status: int, body: Any) -> None:
        """Queue one canned token-endpoint answer."""
        self.canned_token.append(_response(status, body, None))

    def api_seen(self) -> list[Seen]:
        """Requests other than token requests."""
        return [s for s in self.seen if s.path != "/api/v1/access_token"]

    def _record(self, request: Request) -> Seen:
        seen = Seen(
            request.method,
            request.path,
            dict(request.args),
            request.headers.get("Authorization"),
            request.headers.get("User-Agent"),
            self.clock.now(),
        )
        self.seen.append(seen)
        return seen

    def _token(self, request: Request) -> Response:
        seen = self._record(request)
        if self.canned_token:
            return self.canned_token.pop(0)
        if _generic(seen.user_agent):
            return Response(TOO_MANY_HTML, status=429, content_type="text/html")
        expected = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        if seen.authorization != f"Basic {expected}":
            return json_response(401, load("unauthorized.json"))
        if request.form.get("grant_type") != "client_credentials":
            return json_response(200, load("token_unsupported_grant.json"))
        token = f"reddit-app-token-{len(self.tokens) + 1}"
        self.tokens[token] = self.clock.now()
        body = {
            "access_token": token,
            "token_type": "bearer",
            "expires_in": self.token_lifetime,
            "scope": "*",
        }
        return json_response(200, body)

    def _gate(self, seen: Seen) -> tuple[str, Response | None]:
        """The host ("oauth" or "www") and the answer Reddit gives before reading parameters."""
        host = "www" if seen.path.endswith(".json") else "oauth"
        if self.canned:
            return host, self.canned.pop(0)
        if _generic(seen.user_agent):
            return host, Response(TOO_MANY_HTML, status=429, content_type="text/html")
        if host == "oauth":
            auth = seen.authorization or ""
            token = auth[7:] if auth.lower().startswith("bearer ") else ""
            issued = self.tokens.get(token)
            if issued is None or (self.clock.now() - issued).total_seconds() >= self.token_lifetime:
                return host, json_response(401, load("unauthorized.json"))
        window = self.window(host)
        if window.used >= window.limit:
            headers = self.rate_headers(host)
            return host, Response(
                TOO_MANY_HTML, status=429, headers=headers, content_type="text/html"
            )
        window.used += 1
        return host, None

    def _info(self, request: Request) -> Response:
        seen = self._record(request)
        host, early = self._gate(seen)
        if early is not None:
            return early
        headers = self.rate_headers(host)
        names = [n for n in seen.args.get("sr_name", "").split(",") if n]
        ids = [i for i in seen.args.get("id", "").split(",") if i]
        if len(names) > self.max_names or len(ids) > self.max_names:
            return json_response(400, load("bad_request.json"), headers)
        children = []
        by_id = {s["name"]: key for key, s in self.subs.items()}
        for key in [n.lower() for n in names if _NAME.match(n)] + [
            by_id.get(i, "") for i in ids if _T5.match(i)
        ]:
            sub, status = self.subs.get(key), self.status.get(key, "public")
            if sub is None or status in ("quarantined", "gated", "banned"):
                continue
            if status == "private":
                if self.info_lists_private:
                    stub = {k: sub[k] for k in ("display_name", "name", "id")}
                    children.append(
                        {
                            "kind": "t5",
                            "data": stub | {"subreddit_type": "private", "subscribers": None},
                        }
                    )
                continue
            children.append({"kind": "t5", "data": sub})
        listing = load("info_empty.json")
        listing["data"]["children"] = children
        listing["data"]["dist"] = len(children)
        return json_response(200, listing, headers)

    def _about(self, request: Request) -> Response:
        seen = self._record(request)
        host, early = self._gate(seen)
        if early is not None:
            return early
        headers = self.rate_headers(host)
        key = seen.path.split("/")[2].lower()
        sub, status = self.subs.get(key), self.status.get(key, "public")
        if sub is None:
            if host == "www":
                # The public site sends unknown names to its search page.
                location = f"/subreddits/search.json?q={key}"
                return Response("", status=302, headers={**headers, "Location": location})
            return json_response(404, load("not_found.json"), headers)
        if status in ("private", "quarantined", "gated"):
            return json_response(403, load(f"about_{status}.json"), headers)
        if status == "banned":
            return json_response(404, load("about_banned.json"), headers)
        return json_response(200, {"kind": "t5", "data": sub}, headers)


def _generic(agent: str | None) -> bool:
    return not agent or agent.startswith(_GENERIC_AGENTS)


def _response(status: int, body: Any, headers: dict[str, str] | None) -> Response:
    if isinstance(body, (bytes, str)):
        return Response(body, status=status, headers=headers)
    return json_response(status, body, headers)
