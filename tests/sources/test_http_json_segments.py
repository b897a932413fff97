"""http_json: a handle or an id never templates a URL into another endpoint (`.`, `..`)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from pytest_httpserver import HTTPServer

from followerwatch.clock import ManualClock
from followerwatch.config.settings import load_config
from followerwatch.errors import ConfigError
from followerwatch.models import Account, FailureKind, Observation
from followerwatch.sources.http_json import HttpJsonSource, leaves_its_segment

# Each names another path once a server or proxy normalises (and maybe percent-decodes) it.
ESCAPING = [".", "..", "%2e%2e", "%2E.", ".%2e", "%252e%252e", "../admin", "a/../..", "..\\x"]
CONFIG = """
[influxdb]
url = "http://127.0.0.1:8086"
database = "fw"

[platforms.http_json]
url = "https://api.example/v1/users/{handle}/stats"
count_path = "followers"

[[watch]]
platform = "http_json"
handle = "%s"
"""


@pytest.mark.parametrize("value", ESCAPING)
def test_values_that_leave_their_segment(value: str) -> None:
    assert leaves_its_segment(value)


@pytest.mark.parametrize("value", ["alice", "a.b", "...", "u-1", "a/b", "%2e%2e%2e", "1.5e3"])
def test_values_that_stay_one_segment(value: str) -> None:
    assert not leaves_its_segment(value)


@pytest.mark.parametrize("handle", [".", ".."])
def test_a_dot_handle_is_refused_at_load(tmp_path: Path, handle: str) -> None:
    path = tmp_path / "fw.toml"
    path.write_text(CONFIG % handle)
    with pytest.raises(ConfigError, match=r"watch\[0\] \(http_json/\.+\)\.handle: not a valid"):
        load_config(path)


def source(server: HTTPServer, client: httpx.AsyncClient, **extra: str) -> HttpJsonSource:
    return HttpJsonSource(
        client,
        clock=ManualClock(datetime(2026, 1, 1, tzinfo=UTC)),
        url=server.url_for("/v1/users/{handle}/stats"),
        count_path="followers",
        # As wide as a direct caller may make it: the segment check must still hold.
        handle_pattern=r"^.{1,40}$",
        headers={"Authorization": "Bearer secret"},
        **extra,
    )


@pytest.mark.parametrize("handle", ESCAPING)
async def test_a_dot_handle_sends_nothing_and_stores_nothing(
    httpserver: HTTPServer, client: httpx.AsyncClient, handle: str
) -> None:
    # `/v1/users/../stats` is `/v1/stats`: another endpoint, with its own number.
    httpserver.expect_request("/v1/stats").respond_with_json({"followers": 999})
    outcome = await source(httpserver, client).fetch([Account("http_json", handle, "acct")])
    assert outcome.observations == ()
    assert [f.kind for f in outcome.failures] == [FailureKind.NOT_FOUND]
    assert httpserver.log == []


@pytest.mark.parametrize("uid", ["..", ".", "%2e%2e", "../../admin"])
async def test_an_id_that_leaves_its_segment_is_malformed_on_arrival(
    httpserver: HTTPServer, client: httpx.AsyncClient, uid: str
) -> None:
    for name, answer_id in (("alice", uid), ("bob", "u-2")):
        httpserver.expect_request(f"/v1/users/{name}/stats").respond_with_json(
            {"followers": 10, "id": answer_id}
        )
    src = source(httpserver, client, id_path="id", id_url=httpserver.url_for("/v1/ids/{id}"))
    outcome = await src.fetch([Account("http_json", n, n) for n in ("alice", "bob")])
    (failure,) = outcome.failures
    assert (failure.account.name, failure.kind) == ("alice", FailureKind.MALFORMED)
    assert [(o.account.name, o.platform_id) for o in outcome.observations] == [("bob", "u-2")]


async def test_a_stored_dot_id_is_never_templated(
    httpserver: HTTPServer, client: httpx.AsyncClient
) -> None:
    # `/v1/ids/..` is `/v1/`.
    httpserver.expect_request("/v1/").respond_with_json({"followers": 999})
    httpserver.expect_request("/v1/ids/u-2").respond_with_json({"followers": 7, "id": "u-2"})
    src = source(
        httpserver, client, id_path="id", id_url=httpserver.url_for("/v1/ids/{id}/../stats")
    )
    src = source(httpserver, client, id_path="id", id_url=httpserver.url_for("/v1/ids/{id}"))
    accounts = [Account("http_json", "old", "old", ".."), Account("http_json", "b", "b", "u-2")]
    outcome = await src.fetch(accounts)
    assert [(f.account.name, f.kind) for f in outcome.failures] == [("old", FailureKind.MALFORMED)]
    assert [o.followers for o in outcome.observations if isinstance(o, Observation)] == [7]
    assert [r.path for r, _ in httpserver.log] == ["/v1/ids/u-2"]
