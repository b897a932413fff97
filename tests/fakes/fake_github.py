"""A local fake GitHub API (pytest-httpserver): REST users/repos, aliased GraphQL, rate limits."""

from __future__ import annotations

import json
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
TOKEN = "ghp_fakeTestToken0123456789abcdefABCDEF"
_WINDOW = 3600
_FIELD = re.compile(r"\s*(\w+): (user|repository)\(([^)]*)\) \{((?:[^{}]|\{[^{}]*\})*)\}\s*", re.S)
_ARG = re.compile(r'(\w+): ("(?:[^"\\]|\\.)*")')
_FIELDS = {
    "user": {"databaseId", "login", "followers", "following", "repositories"},
    "repository": {"databaseId", "nameWithOwner", "stargazerCount"},
}
_CONNECTIONS = {"followers", "following", "repositories"}


def load(name: str) -> Any:
    """A response body from tests/fixtures/github."""
    return common.load("github", name)


def make_user(i: int, **extra: Any) -> dict[str, Any]:
    """A REST user object with distinct counts per index."""
    return {
        "login": f"user-{i:03d}",
        "id": 1_000 + i,
        "type": "User",
        "followers": 100 + 7 * i,
        "following": i,
        "public_repos": i % 13,
        **extra,
    }


def make_repo(i: int, **extra: Any) -> dict[str, Any]:
    """A REST repository object with a distinct star count per index."""
    owner = f"owner-{i % 5}"
    return {
        "id": 500_000 + i,
        "name": f"repo-{i}",
        "full_name": f"{owner}/repo-{i}",
        "owner": {"login": owner, "type": "User"},
        "stargazers_count": 10 * i,
        **extra,
    }


@dataclass
class Bucket:
    """One x-ratelimit-resource budget."""

    resource: str
    limit: int
    remaining: int
    reset: int

    def headers(self) -> dict[str, str]:
        """The five x-ratelimit-* headers GitHub sends on every answer."""
        return {
            "x-ratelimit-limit": str(self.limit),
            "x-ratelimit-remaining": str(max(self.remaining, 0)),
            "x-ratelimit-used": str(self.limit - max(self.remaining, 0)),
            "x-ratelimit-reset": str(self.reset),
            "x-ratelimit-resource": self.resource,
        }


@dataclass(frozen=True)
class Seen:
    """One request as the fake received it; `time` is the ManualClock at arrival."""

    method: str
    path: str
    authorization: str | None
    query: str | None
    time: datetime


class FakeGitHub:
    """Users, organisations, repositories (with renames and blocks) served over REST and GraphQL."""

    load = staticmethod(load)
    make_user = staticmethod(make_user)
    make_repo = staticmethod(make_repo)

    def __init__(self, server: HTTPServer, clock: Clock) -> None:
        self.server = server
        self.clock = clock
        self.token = TOKEN
        self.users: dict[str, dict[str, Any]] = {}
        self.repos: dict[str, dict[str, Any]] = {}
        self.moved: dict[str, int] = {}
        self.blocked: set[str] = set()
        # Whether GraphQL's repository() follows a rename the way REST's 301 does.
        self.graphql_follows_renames = False
        reset = int(clock.now().timestamp()) + _WINDOW
        self.buckets = {
            "core": Bucket("core", 5_000, 5_000, reset),
            "core-anonymous": Bucket("core", 60, 60, reset),
            "graphql": Bucket("graphql", 5_000, 5_000, reset),
        }
        self.canned: list[Response] = []
        self.seen: list[Seen] = []
        server.expect_request(re.compile(r"^/.*$")).respond_with_handler(self._route)

    @property
    def base_url(self) -> str:
        """What GitHubSource takes as base_url (GraphQL is at {base_url}/graphql)."""
        return self.server.url_for("/").rstrip("/")

    def add(self, *objects: dict[str, Any]) -> None:
        """Put REST user, organisation or repository objects in the fake's database."""
        for obj in objects:
            if "full_name" in obj:
                self.repos[obj["full_name"].lower()] = obj
            else:
                self.users[obj["login"].lower()] = obj

    def serve(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        """Queue one canned answer; str bodies are sent raw, anything else as JSON."""
        if isinstance(body, (bytes, str)):
            self.canned.append(Response(body, status=status, headers=headers))
        else:
            self.canned.append(json_response(status, body, headers))

    def graphql_queries(self) -> list[str]:
        """The GraphQL queries received, in order."""
        return [s.query for s in self.seen if s.query is not None]

    def _route(self, request: Request) -> Response:
        now = self.clock.now()
        auth = request.headers.get("Authorization")
        payload = request.get_json(silent=True) if request.method == "POST" else None
        query = payload.get("query") if isinstance(payload, dict) else None
        self.seen.append(Seen(request.method, request.path, auth, query, now))
        if self.canned:
            return self.canned.pop(0)
        if auth is not None and auth.lower() != f"bearer {self.token}".lower():
            return json_response(401, load("bad_credentials.json"))
        if request.path == "/graphql":
            if request.method != "POST":
                return json_response(404, load("not_found.json"))
            if auth is None:
                return json_response(401, load("graphql_unauthenticated.json"))
            bucket = self._spend("graphql", now)
            if bucket is None:
                bucket = self.buckets["graphql"]
                return json_response(200, load("graphql_rate_limited.json"), bucket.headers())
            return self._graphql(payload, query, bucket)
        bucket = self._spend("core" if auth else "core-anonymous", now)
        if bucket is None:
            limited = self.buckets["core" if auth else "core-anonymous"]
            return json_response(403, load("rate_limited.json"), limited.headers())
        status, body, extra = self._rest(request.path)
        return json_response(status, body, {**bucket.headers(), **extra})

    def _spend(self, name: str, now: datetime) -> Bucket | None:
        bucket = self.buckets[name]
        if now.timestamp() >= bucket.reset:
            bucket.remaining, bucket.reset = bucket.limit, int(now.timestamp()) + _WINDOW
        if bucket.remaining <= 0:
            return None
        bucket.remaining -= 1
        return bucket

    def _rest(self, path: str) -> tuple[int, Any, dict[str, str]]:
        parts = path.strip("/").split("/")
        found: dict[str, Any] | None = None
        if len(parts) == 2 and parts[0] == "users":
            found = self.users.get(parts[1].lower())
        elif len(parts) == 2 and parts[0] == "user" and parts[1].isdigit():
            found = next((u for u in self.users.values() if u["id"] == int(parts[1])), None)
        elif len(parts) == 2 and parts[0] == "repositories" and parts[1].isdigit():
            found = next((r for r in self.repos.values() if r["id"] == int(parts[1])), None)
        elif len(parts) == 3 and parts[0] == "repos":
            name = f"{parts[1]}/{parts[2]}".lower()
            if name in self.blocked:
                return 451, load("repo_blocked.json"), {}
            if name in self.moved:
                url = f"{self.base_url}/repositories/{self.moved[name]}"
                moved = {**load("repo_moved.json"), "url": url}
                return 301, moved, {"Location": url}
            found = self.repos.get(name)
        if found is None:
            return 404, load("not_found.json"), {}
        return 200, found, {}

    def _graphql(self, payload: Any, query: Any, bucket: Bucket) -> Response:
        headers = bucket.headers()
        if not isinstance(query, str):
            return json_response(400, {"message": "Problems parsing JSON"}, headers)
        inner = re.fullmatch(r"\s*(?:query\s*)?\{(.*)\}\s*", query, re.S)
        fields = list(_FIELD.finditer(inner.group(1))) if inner else []
        if inner is None or "".join(m.group(0) for m in fields) != inner.group(1):
            return self._query_error("Parse error on the query", headers)
        data: dict[str, Any] = {}
        errors: list[dict[str, Any]] = []
        for match in fields:
            alias, kind, raw_args, selection = match.groups()
            args = {k: json.loads(v) for k, v in _ARG.findall(raw_args)}
            wanted = _selected(selection)
            unknown = set(wanted) - _FIELDS[kind]
            if unknown:
                type_name = "User" if kind == "user" else "Repository"
                return self._query_error(
                    f"Field '{sorted(unknown)[0]}' doesn't exist on type '{type_name}'", headers
                )
            if kind == "user":
                node = self._user_node(args.get("login", ""), wanted)
                missing = f"Could not resolve to a User with the login of '{args.get('login')}'."
            else:
                full = f"{args.get('owner')}/{args.get('name')}"
                node = self._repo_node(full, wanted)
                missing = f"Could not resolve to a Repository with the name '{full}'."
            data[alias] = node
            if node is None:
                errors.append(
                    {
                        "type": "NOT_FOUND",
                        "path": [alias],
                        "locations": [{"line": 2, "column": 3}],
                        "message": missing,
                    }
                )
        body: dict[str, Any] = {"data": data}
        if errors:
            body["errors"] = errors
        return json_response(200, body, headers)

    @staticmethod
    def _query_error(message: str, headers: dict[str, str]) -> Response:
        body = {"errors": [{"message": message, "locations": [{"line": 1, "column": 1}]}]}
        return json_response(200, body, headers)

    def _user_node(self, login: str, wanted: list[str]) -> dict[str, Any] | None:
        user = self.users.get(login.lower())
        # GraphQL user() resolves users only; organisations answer NOT_FOUND there.
        if user is None or user.get("type") != "User":
            return None
        values = {
            "databaseId": user["id"],
            "login": user["login"],
            "followers": {"totalCount": user["followers"]},
            "following": {"totalCount": user["following"]},
            "repositories": {"totalCount": user["public_repos"]},
        }
        return {k: values[k] for k in wanted}

    def _repo_node(self, full_name: str, wanted: list[str]) -> dict[str, Any] | None:
        repo = self.repos.get(full_name.lower())
        if repo is None and self.graphql_follows_renames and full_name.lower() in self.moved:
            rid = self.moved[full_name.lower()]
            repo = next((r for r in self.repos.values() if r["id"] == rid), None)
        if repo is None or full_name.lower() in self.blocked:
            return None
        values = {
            "databaseId": repo["id"],
            "nameWithOwner": repo["full_name"],
            "stargazerCount": repo["stargazers_count"],
        }
        return {k: values[k] for k in wanted}


def _selected(selection: str) -> list[str]:
    """Top-level field names of a selection; connections must ask for `{ totalCount }`."""
    text = re.sub(r"\([^)]*\)", "", selection)
    names = re.findall(r"(\w+)(\s*\{\s*totalCount\s*\})?", text)
    out = []
    for name, sub in names:
        out.append(name if (name in _CONNECTIONS) == bool(sub) else f"{name}?")
    return out
