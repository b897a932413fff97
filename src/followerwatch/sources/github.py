"""GitHub: user followers and repository stars; GraphQL batches with a token, else REST.

With a token, accounts go 50 to a GraphQL request (5,000 points an hour). Without one GraphQL is
closed, so each account is one REST request, at 60 an hour per IP. What GraphQL cannot resolve is
asked again over REST: by stored id (renamed users and repositories), else by name (organisations,
which GraphQL `user()` does not resolve, and repositories whose old name REST redirects).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, NoReturn, Unpack

import httpx
from pydantic import SecretStr

from followerwatch.clock import Clock
from followerwatch.config.base import PlatformConfig
from followerwatch.config.fields import Duration, HttpUrl
from followerwatch.errors import AuthError, NotFoundError, SourceError, TransientError
from followerwatch.models import Account, Failure, FailureKind, FetchResult, Observation, is_count
from followerwatch.net.ratelimit import header
from followerwatch.sources.base import HttpSource, SourceContext, SourceSpec, Tuning, tuning
from followerwatch.sources.common import (
    Outcome,
    Tally,
    assemble,
    chunks,
    each_call,
    json_body,
    json_object,
    rate_headers,
    retry_after_reset_or_backoff,
    screen,
    secret,
)

API = "https://api.github.com"
_RATE_PREFIX = "x-ratelimit-"
_HEADERS = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
# A login: 1-39 letters, digits or single inner hyphens; a repository: 1-100 of [A-Za-z0-9._-].
_LOGIN = r"(?=[A-Za-z0-9-]{1,39}(?:/|$))[A-Za-z0-9](?:-?[A-Za-z0-9])*"
_REPO = r"/(?!\.\.?$)[A-Za-z0-9._-]{1,100}"
_ID = re.compile(r"[0-9]{1,20}")
_MOVED = re.compile(r"/repositories/([0-9]{1,20})(?:[/?#]|$)")
_USER_FIELDS = (
    "databaseId login followers { totalCount } following { totalCount } "
    "repositories(privacy: PUBLIC, ownerAffiliations: [OWNER]) { totalCount }"
)
_REPO_FIELDS = "databaseId nameWithOwner stargazerCount"
_INVALID = "not a GitHub login or owner/repo"


def graphql_endpoint(base_url: str) -> str:
    """GraphQL's URL for a REST base: `{base}/graphql`, or `/api/graphql` on GitHub Enterprise."""
    base = base_url.rstrip("/")
    if base.endswith("/api/v3"):
        return base.removesuffix("/v3") + "/graphql"
    return base + "/graphql"


class GitHubConfig(PlatformConfig):
    """`[platforms.github]`: an optional token, and the API URLs (for GitHub Enterprise)."""

    token: SecretStr | None = None
    base_url: HttpUrl = API
    # Default: derived from base_url (`{base_url}/graphql`, or `/api/graphql` for `/api/v3`).
    graphql_url: HttpUrl | None = None
    max_wait: Duration = 900.0
    # A token's budget is per hour.
    max_backoff: Duration = 3600.0


@dataclass(frozen=True)
class _Counts:
    """What either API says about one user or repository."""

    id: str
    handle: str
    followers: int
    following: int | None
    posts: int | None


class GitHubSource(HttpSource):
    """Followers of users (`login`) and stars of repositories (`owner/repo`)."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        clock: Clock,
        token: str | None = None,
        base_url: str = API,
        graphql_url: str | None = None,
        **settings: Unpack[Tuning],
    ) -> None:
        # REST and GraphQL are separate budgets (x-ratelimit-resource core/graphql): two buckets.
        super().__init__(SPEC, client, clock, rate_headers(_RATE_PREFIX), **settings)
        self._rest = base_url.rstrip("/")
        self._graphql = graphql_url or graphql_endpoint(self._rest)
        self._anonymous = not token
        self._headers = dict(_HEADERS)
        if token:
            self._headers["Authorization"] = f"Bearer {token}"

    async def fetch(self, accounts: Sequence[Account]) -> FetchResult:
        """Look up every account; per-account problems become Failures, batch problems raise."""
        tally = Tally()
        fits = self.spec.handle_pattern.fullmatch
        order, valid, results = screen(accounts, lambda a: fits(a.handle), _INVALID, self._clock)
        if self._anonymous:
            groups = chunks(valid, _rest_path, 1)
            ask_rest = partial(self._rest_group, tally=tally)
            results.update(await each_call(groups, lambda g: g, ask_rest, self._clock))
        else:
            groups = chunks(valid, lambda a: a.handle.lower(), self.spec.batch_max)
            ask = partial(self._graphql_batch, tally=tally)
            results.update(await each_call(groups, lambda g: g, ask, self._clock))
            await self._second_opinion(valid, results, tally)
        return assemble(order, results, tally)

    async def _second_opinion(
        self, valid: Sequence[Account], results: dict[Account, Outcome], tally: Tally
    ) -> None:
        """Ask REST about what GraphQL did not find; if REST fails too, GraphQL's answer stands."""
        stale: dict[Account, Failure] = {}
        for account in valid:
            outcome = results[account]
            if isinstance(outcome, Failure) and outcome.kind == _NOT_FOUND:
                stale[account] = outcome
        for group in chunks(list(stale), _rest_path, 1):
            try:
                found = await self._rest_group(group, tally)
            except AuthError:
                raise
            except SourceError as exc:
                for account in group:
                    detail = f"{stale[account].detail}; REST lookup failed: {exc}".lstrip("; ")
                    results[account] = dataclasses.replace(stale[account], detail=detail[:400])
                continue
            results.update(found)

    async def _graphql_batch(
        self, group: Sequence[Account], tally: Tally
    ) -> dict[Account, Outcome]:
        """One aliased GraphQL query for up to batch_max distinct handles."""
        spelling: dict[str, str] = {}
        for account in group:
            spelling.setdefault(account.handle.lower(), account.handle)
        alias = {key: f"a{i}" for i, key in enumerate(spelling)}
        fields = [_selection(alias[key], handle) for key, handle in spelling.items()]
        response, received = await self._requester.send(
            "POST",
            self._graphql,
            tally,
            bucket="graphql",
            json={"query": "query {\n  " + "\n  ".join(fields) + "\n}"},
            headers=self._headers,
            is_rate_limited=_is_rate_limited,
            retry_time=retry_after_reset_or_backoff,
        )
        if response.status_code != 200:
            _raise_for(response)
        data, errors = _graphql_body(response)
        out: dict[Account, Outcome] = {}
        for account in group:
            name = alias[account.handle.lower()]
            node = data.get(name)
            problems = [e for e in errors if _error_alias(e) == name]
            if isinstance(node, dict):
                out[account] = _observe(account, node, received, rest=False)
            elif problems:
                kind, detail = _classify(problems[0])
                out[account] = Failure(account, received, kind, detail)
            else:
                detail = "absent from both data and errors"
                out[account] = Failure(account, received, FailureKind.NOT_RETURNED, detail)
        return out

    async def _rest_group(self, group: Sequence[Account], tally: Tally) -> dict[Account, Outcome]:
        """One REST lookup answering every account in `group` (they share its path)."""
        raw, received = await self._rest_get(_rest_path(group[0]), tally)
        if isinstance(raw, tuple):
            return {a: Failure(a, received, *raw) for a in group}
        return {a: _observe(a, raw, received, rest=True) for a in group}

    async def _rest_get(
        self, path: str, tally: Tally, *, follow: bool = True
    ) -> tuple[dict[str, Any] | tuple[FailureKind, str], datetime]:
        """A REST object, or the per-account failure GitHub answered instead, and its arrival."""
        response, received = await self._requester.send(
            "GET",
            self._rest + path,
            tally,
            bucket="core",
            headers=self._headers,
            is_rate_limited=_is_rate_limited,
            retry_time=retry_after_reset_or_backoff,
        )
        status = response.status_code
        if status == 200:
            body = json_body(response, "GitHub")
            if not isinstance(body, dict):
                raise TransientError("GitHub answered 200 with a body that is not an object")
            return body, received
        problem = json_object(response)
        message = _text(problem.get("message"))
        if status in (301, 302, 307, 308) and follow:
            # A renamed or transferred repository points at its durable id; only that is used,
            # so the token never follows a redirect to another host.
            moved = _MOVED.search(
                _text(problem.get("url")) or header(response.headers, "location") or ""
            )
            if moved:
                return await self._rest_get(f"/repositories/{moved.group(1)}", tally, follow=False)
        if status == 404:
            return (_NOT_FOUND, message or "Not Found"), received
        if status == 451 or (status == 403 and "blocked" in message.lower()):
            return (FailureKind.FORBIDDEN, message or f"HTTP {status}"), received
        _raise_for(response)


_NOT_FOUND = FailureKind.NOT_FOUND


def _rest_path(account: Account) -> str:
    """The REST resource of an account: by durable id when one is stored, else by name."""
    repo = "/" in account.handle
    pid = account.platform_id
    if pid is not None and _ID.fullmatch(pid):
        return f"/repositories/{pid}" if repo else f"/user/{pid}"
    return f"/repos/{account.handle}" if repo else f"/users/{account.handle}"


def _selection(alias: str, handle: str) -> str:
    if "/" in handle:
        owner, name = handle.split("/", 1)
        args = f"owner: {json.dumps(owner)}, name: {json.dumps(name)}"
        return f"{alias}: repository({args}) {{ {_REPO_FIELDS} }}"
    return f"{alias}: user(login: {json.dumps(handle)}) {{ {_USER_FIELDS} }}"


def _text(value: Any) -> str:
    return value[:200] if isinstance(value, str) else ""


def _is_rate_limited(response: httpx.Response) -> bool:
    """429; a 403 about the rate limit, not permissions; a GraphQL 200 erring RATE_LIMITED."""
    status = response.status_code
    if status == 200:
        # Only parse twice when the marker is there at all.
        errors = json_object(response).get("errors") if b"RATE_LIMITED" in response.content else []
        entries = errors if isinstance(errors, list) else []
        return any(isinstance(e, dict) and e.get("type") == "RATE_LIMITED" for e in entries)
    if status != 403:
        return status == 429
    if header(response.headers, "retry-after") is not None:
        return True
    if (header(response.headers, "x-ratelimit-remaining") or "").strip() == "0":
        return True
    return "rate limit" in _text(json_object(response).get("message")).lower()


def _raise_for(response: httpx.Response) -> NoReturn:
    """A typed error for an answer that concerns the whole request; never includes the token."""
    status = response.status_code
    detail = _text(json_object(response).get("message"))
    suffix = f": {detail}" if detail else ""
    if status == 401:
        raise AuthError(f"GitHub rejected the credentials (HTTP 401){suffix}")
    if status == 403:
        raise AuthError(f"GitHub refused the request (HTTP 403){suffix}")
    if status == 404:
        raise NotFoundError(f"GitHub has no such endpoint (HTTP 404){suffix}")
    raise TransientError(f"GitHub answered HTTP {status}{suffix}")


def _graphql_body(response: httpx.Response) -> tuple[dict[str, Any], list[Any]]:
    """`data` and `errors` of a 200 GraphQL answer; a failed query is a TransientError."""
    payload = json_body(response, "GitHub")
    if not isinstance(payload, dict):
        raise TransientError("GitHub GraphQL answered with a body that is not an object")
    data, errors = payload.get("data"), payload.get("errors", [])
    if not isinstance(errors, list):
        raise TransientError("GitHub GraphQL answered with `errors` that is not a list")
    if not isinstance(data, dict):
        first = errors[0] if errors and isinstance(errors[0], dict) else {}
        detail = _text(first.get("message")) or "no `data`"
        raise TransientError(f"GitHub GraphQL query failed: {detail}")
    return data, errors


def _error_alias(entry: Any) -> str | None:
    path = entry.get("path") if isinstance(entry, dict) else None
    return path[0] if isinstance(path, list) and path and isinstance(path[0], str) else None


def _classify(entry: Mapping[str, Any]) -> tuple[FailureKind, str]:
    kinds = {"NOT_FOUND": _NOT_FOUND, "FORBIDDEN": FailureKind.FORBIDDEN}
    kind = kinds.get(_text(entry.get("type")), FailureKind.NOT_RETURNED)
    return kind, _text(entry.get("message"))


def _observe(account: Account, raw: Mapping[str, Any], when: datetime, *, rest: bool) -> Outcome:
    """The observation in a REST object or GraphQL node; MALFORMED if any value is not a count."""
    repo = "/" in account.handle
    try:
        counts = _from_rest(raw, repo=repo) if rest else _from_graphql(raw, repo=repo)
    except ValueError as exc:
        return Failure(account, when, FailureKind.MALFORMED, str(exc))
    pid = account.platform_id
    if pid is not None and _ID.fullmatch(pid) and counts.id != pid:
        # The old name now belongs to someone else: their counts are not ours.
        detail = f"{account.handle} now belongs to another account (id {counts.id})"
        return Failure(account, when, _NOT_FOUND, detail)
    return Observation(
        account=account,
        time=when,
        followers=counts.followers,
        following=counts.following,
        posts=counts.posts,
        platform_id=counts.id,
        handle=counts.handle,
    )


def _from_graphql(node: Mapping[str, Any], *, repo: bool) -> _Counts:
    if repo:
        return _counts(node, "databaseId", "nameWithOwner", node.get("stargazerCount"), None, None)
    return _counts(
        node,
        "databaseId",
        "login",
        _total(node, "followers"),
        _total(node, "following"),
        _total(node, "repositories"),
    )


def _from_rest(raw: Mapping[str, Any], *, repo: bool) -> _Counts:
    if repo:
        return _counts(raw, "id", "full_name", raw.get("stargazers_count"), None, None)
    following, posts = raw.get("following"), raw.get("public_repos")
    return _counts(raw, "id", "login", raw.get("followers"), following, posts)


def _total(node: Mapping[str, Any], name: str) -> Any:
    connection = node.get(name)
    return connection.get("totalCount") if isinstance(connection, dict) else None


def _counts(
    raw: Mapping[str, Any], id_key: str, name_key: str, followers: Any, following: Any, posts: Any
) -> _Counts:
    """Validated counts; a wrong type anywhere is a ValueError (MALFORMED), never a number."""
    uid, name = raw.get(id_key), raw.get(name_key)
    if type(uid) is not int or uid < 0:
        raise ValueError(f"{id_key} is {uid!r}, not a numeric id")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{name_key} is {name!r}")
    if _count(followers) is None:
        raise ValueError(f"the follower/star count is {followers!r}, not a count")
    for label, value in (("following", following), ("repository", posts)):
        if value is not None and _count(value) is None:
            raise ValueError(f"the {label} count is {value!r}, not a count")
    return _Counts(str(uid), name, followers, _count(following), _count(posts))


def _count(value: Any) -> int | None:
    return value if is_count(value) else None


def build(config: GitHubConfig, ctx: SourceContext) -> GitHubSource:
    """The GitHub source for one token (or for anonymous REST when there is none)."""
    return GitHubSource(
        ctx.client,
        clock=ctx.clock,
        token=secret(config.token) or None,
        base_url=config.base_url,
        graphql_url=config.graphql_url,
        **tuning(config, ctx),
    )


def requests_per_batch(config: GitHubConfig, accounts: int) -> int:
    """GraphQL takes a batch in one request; anonymous REST needs one per account."""
    return 1 if config.token is not None else accounts


def ceiling_for(config: GitHubConfig) -> tuple[int, float]:
    """5,000 requests an hour with a token, 60 without."""
    return (5_000, 3_600.0) if config.token is not None else (60, 3_600.0)


SPEC = SourceSpec(
    key="github",
    title="GitHub",
    config_model=GitHubConfig,
    build=build,
    # GraphQL aliases per request; anonymous REST is always one account per request.
    batch_max=50,
    handle_pattern=re.compile(rf"^{_LOGIN}(?:{_REPO})?$"),
    # With a token; anonymous REST allows 60 requests an hour per IP.
    rate_limit_ceiling=(5_000, 3_600),
    requests_per_batch=requests_per_batch,
    ceiling_for=ceiling_for,
)
