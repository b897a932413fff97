"""A group's URL is encoded once and reused; it is byte for byte the URL httpx builds anew."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from itertools import pairwise

import httpx
import pytest

from followerwatch.clock import ManualClock
from followerwatch.models import Account
from followerwatch.net.urls import QueryUrls
from followerwatch.sources.common import Requester, Tally
from followerwatch.sources.x import XSource

BASE = "https://api.example/2/users/by"
AWKWARD = [
    "émile",
    "名前",
    "a+b",
    "a&b=c",
    "with space",
    "100%",
    "%20",
    "%zz",
    "#frag",
    "q?x",
    "s/l",
    "🙂",
    "",
    "'\"<>",
    "~._-",
    "tab\there",
]
PARAMS: list[Mapping[str, str] | Sequence[tuple[str, str]]] = [
    {"usernames": ",".join(AWKWARD), "user.fields": "public_metrics"},
    [("actors", name) for name in AWKWARD],
    [("id[]", name) for name in AWKWARD],
    {name or "empty": name for name in AWKWARD},
    [],
]


def fresh(url: str, params: object) -> httpx.URL:
    """The URL httpx builds for a request given (url, params=...), as the sources sent it."""
    return httpx.AsyncClient().build_request("GET", url, params=params).url  # type: ignore[arg-type]


@pytest.mark.parametrize("params", PARAMS)
@pytest.mark.parametrize("base", [BASE, BASE + "?old=query", "http://[::1]:8080/p%20ath/"])
def test_the_cached_url_is_the_one_httpx_builds(base: str, params: object) -> None:
    urls = QueryUrls(min_text=0)
    first = urls.url(base, params)
    again = urls.url(base, params)
    expected = fresh(base, params)
    assert first is not None
    assert again is first
    assert first == expected
    assert first.raw_path == expected.raw_path
    assert str(first) == str(expected)


def group(tag: str, n: int) -> list[tuple[str, str]]:
    """A group of `n` accounts; groups of one size cost the cache the same."""
    return [("actors", f"{tag}-{i:03}") for i in range(n)]


def sized(entries: int) -> QueryUrls:
    """A cache with room for `entries` groups of group(tag, 5)."""
    probe = QueryUrls(min_text=0)
    probe.url(BASE, group("probe", 5))
    return QueryUrls(max_bytes=entries * probe.size, min_text=0)


def test_a_changed_group_is_another_url_and_the_old_ones_age_out() -> None:
    urls = sized(4)
    old = [group(f"old{g}", 5) for g in range(4)]
    for _ in range(3):
        for params in old:
            urls.url(BASE, params)
    assert len(urls) == 4
    new = [group(f"new{g}", 5) for g in range(4)]
    seen: list[list[httpx.URL | None]] = []
    for _ in range(10):
        seen.append([urls.url(BASE, params) for params in new])
    # At first the old groups were still live; once stale, the new ones took their place.
    assert all(a is not b for a, b in zip(seen[0], seen[1], strict=True))
    assert all(a is b for a, b in zip(seen[-2], seen[-1], strict=True))
    assert all(u == fresh(BASE, p) for u, p in zip(seen[-1], new, strict=True))
    assert len(urls) == 4
    assert urls.size <= urls.max_bytes
    first_old = urls.url(BASE, old[0])
    assert first_old is not None and first_old is not urls.url(BASE, old[0])


def test_a_cycle_of_more_groups_than_fit_still_finds_those_that_did() -> None:
    urls = sized(4)
    groups = [group(f"g{g}", 5) for g in range(8)]
    rounds = [[urls.url(BASE, params) for params in groups] for _ in range(5)]
    for before, after in pairwise(rounds):
        kept = sum(a is b for a, b in zip(before, after, strict=True))
        # Least-recently-used eviction would keep none: each group is evicted before its turn.
        assert kept == 4
    assert urls.size <= urls.max_bytes


def test_a_url_bigger_than_the_budget_is_built_but_not_kept() -> None:
    urls = QueryUrls(max_bytes=100, min_text=0)
    params = [("actors", "x" * 500)]
    assert urls.url(BASE, params) == fresh(BASE, params)
    assert len(urls) == 0
    assert urls.size == 0


@pytest.mark.parametrize(
    "params",
    [{"n": 1}, {"b": True}, [("n", 1.0)], [("a", "1", "extra")], "a=1", {"a": ["1", "2"]}],
)
def test_params_that_are_not_all_text_are_left_to_httpx(params: object) -> None:
    # 1, 1.0 and True are equal keys, yet httpx writes "1", "1.0" and "true".
    assert QueryUrls(min_text=0).url(BASE, params) is None


def test_one_accounts_query_is_not_kept() -> None:
    # A lookup per account would make the cache one URL per account: those are encoded anew.
    urls = QueryUrls()
    assert urls.url(BASE, {"actor": "did:plc:" + "a" * 24}) is None
    group = [("actors", f"did:plc:{i:024}") for i in range(25)]
    assert urls.url(BASE, group) == fresh(BASE, group)
    assert len(urls) == 1


class Recorder:
    """A transport that answers 200 and keeps every request it was sent."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(200, json={"data": [], "errors": []})


def requester(client: httpx.AsyncClient) -> Requester:
    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    urls = QueryUrls(min_text=0)
    return Requester(client, clock, "Test", lambda h, now: None, 0.0, urls=urls)


@pytest.mark.parametrize("params", PARAMS)
async def test_the_requester_sends_the_same_bytes_each_cycle(params: object) -> None:
    recorder = Recorder()
    async with httpx.AsyncClient(transport=httpx.MockTransport(recorder)) as client:
        sender = requester(client)
        for _ in range(3):
            await sender.send("GET", BASE, Tally(), params=params)
    expected = fresh(BASE, params)
    assert [r.url.raw_path for r in recorder.requests] == [expected.raw_path] * 3
    assert [str(r.url) for r in recorder.requests] == [str(expected)] * 3
    assert len(sender.urls) == 1


async def test_headers_are_never_cached_with_the_url() -> None:
    # A renewed OAuth token goes out on the very next request for the same group.
    recorder = Recorder()
    params = [("login", "a"), ("login", "b")]
    async with httpx.AsyncClient(transport=httpx.MockTransport(recorder)) as client:
        sender = requester(client)
        for token in ("old", "new"):
            headers = {"Authorization": f"Bearer {token}"}
            await sender.send("GET", BASE, Tally(), params=params, headers=headers)
    assert [r.headers["authorization"] for r in recorder.requests] == ["Bearer old", "Bearer new"]
    assert recorder.requests[0].url == recorder.requests[1].url


async def test_client_wide_params_are_merged_as_before() -> None:
    # httpx would replace a ready URL's query by the client's params: those are encoded anew.
    recorder = Recorder()
    transport = httpx.MockTransport(recorder)
    async with httpx.AsyncClient(transport=transport, params={"k": "v"}) as client:
        sender = requester(client)
        await sender.send("GET", BASE, Tally(), params={"a": "1 2"})
        expected = client.build_request("GET", BASE, params={"a": "1 2"}).url
    assert recorder.requests[0].url == expected
    assert expected.params == httpx.QueryParams({"k": "v", "a": "1 2"})
    assert len(sender.urls) == 0


async def test_non_text_params_still_reach_the_server_as_httpx_writes_them() -> None:
    recorder = Recorder()
    async with httpx.AsyncClient(transport=httpx.MockTransport(recorder)) as client:
        sender = requester(client)
        await sender.send("GET", BASE, Tally(), params={"n": 1})
        await sender.send("GET", BASE, Tally(), params={"n": True})
    assert [r.url.query for r in recorder.requests] == [b"n=1", b"n=true"]


async def test_a_source_reuses_its_groups_urls_across_cycles() -> None:
    recorder = Recorder()
    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    names = [f"user_{i}" for i in range(250)]
    accounts = [Account("x", name, name) for name in names]
    async with httpx.AsyncClient(transport=httpx.MockTransport(recorder)) as client:
        source = XSource(client, bearer_token="t", clock=clock, base_url="https://x.example")
        await source.fetch(accounts)
        first = [r.url for r in recorder.requests]
        recorder.requests.clear()
        await source.fetch(accounts)
        urls = source._requester.urls
    assert [r.url for r in recorder.requests] == first
    assert len(first) == 3
    assert len(urls) == 3
    # Only the changed group asks with a new URL.
    recorder.requests.clear()
    async with httpx.AsyncClient(transport=httpx.MockTransport(recorder)) as client:
        source._requester.client = client
        await source.fetch([*accounts[:-1], Account("x", "someone_else", "someone_else")])
    assert [r.url for r in recorder.requests][:2] == first[:2]
    assert recorder.requests[2].url != first[2]
    assert len(urls) == 4


async def test_a_relative_url_still_joins_the_clients_base_url() -> None:
    recorder = Recorder()
    params = [("actors", name) for name in AWKWARD]
    transport = httpx.MockTransport(recorder)
    async with httpx.AsyncClient(transport=transport, base_url="https://h.example/v1") as client:
        sender = requester(client)
        await sender.send("GET", "/xrpc/m", Tally(), params=params)
        expected = client.build_request("GET", "/xrpc/m", params=params).url
    assert str(recorder.requests[0].url) == str(expected)
    assert expected.path == "/v1/xrpc/m"
