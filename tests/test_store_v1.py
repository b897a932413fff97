"""InfluxV1Store against a real influxd 1.x, plus a stub server for statuses 1.x never sends."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from pytest_httpserver import HTTPServer

from followerwatch.demo.influxd import TempInfluxd, free_port
from followerwatch.errors import StoreAuthError, StoreError
from followerwatch.models import Point
from followerwatch.store.base import QueryableStore
from followerwatch.store.influx_v1 import (
    InfluxV1Store,
    quote_ident,
    quote_literal,
    redact_url,
)

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
T0_S = 1714564800


def followers(
    account: str,
    count: int,
    when: datetime = T0,
    platform: str = "mastodon",
    **extra: int,
) -> Point:
    fields: tuple[tuple[str, int], ...] = (("followers", count), *extra.items())
    return Point("followers", (("platform", platform), ("account", account)), fields, when)


def rows(series: list[dict[str, object]]) -> list[dict[str, object]]:
    out = []
    for item in series:
        columns = item["columns"]
        assert isinstance(columns, list)
        for values in item["values"]:  # type: ignore[attr-defined]
            out.append(dict(zip(columns, values, strict=True)))
    return out


@pytest.fixture
def store(influx_db: tuple[str, str], http_client: httpx.AsyncClient) -> InfluxV1Store:
    url, database = influx_db
    return InfluxV1Store(http_client, url=url, database=database)


def test_satisfies_the_store_protocols(store: InfluxV1Store) -> None:
    queryable: QueryableStore = store
    assert queryable is store


# -- writing and reading back ------------------------------------------------------------------


async def test_followers_round_trip_with_integer_fields(store: InfluxV1Store) -> None:
    await store.write(
        [
            followers("alice", 1200, following=80, posts=950),
            followers("bob", 7, T0 + timedelta(seconds=1, microseconds=900_000), platform="x"),
        ]
    )
    await store.check()

    got = rows(await store.query('SELECT * FROM "followers" ORDER BY time'))
    assert got == [
        {
            "time": T0_S,
            "account": "alice",
            "platform": "mastodon",
            "followers": 1200,
            "following": 80,
            "posts": 950,
        },
        # second precision: the sub-second part is floored, never rounded up
        {
            "time": T0_S + 1,
            "account": "bob",
            "platform": "x",
            "followers": 7,
            "following": None,
            "posts": None,
        },
    ]

    field_types = {
        r["fieldKey"]: r["fieldType"] for r in rows(await store.query("SHOW FIELD KEYS"))
    }
    assert field_types == {"followers": "integer", "following": "integer", "posts": "integer"}
    tag_keys = {r["tagKey"] for r in rows(await store.query('SHOW TAG KEYS FROM "followers"'))}
    assert tag_keys == {"platform", "account"}


async def test_rewriting_same_series_and_time_overwrites(store: InfluxV1Store) -> None:
    await store.write([followers("alice", 100)])
    await store.write([followers("alice", 101)])  # a replayed or corrected batch
    got = rows(await store.query('SELECT COUNT("followers"), LAST("followers") FROM "followers"'))
    assert got == [{"time": 0, "count": 1, "last": 101}]


async def test_tags_with_quotes_are_queryable_with_quote_literal(store: InfluxV1Store) -> None:
    tricky = 'o\'brien \\x "q" \\n'
    await store.write([followers(tricky, 5), followers("other", 6)])
    query = (
        f"SELECT followers FROM followers WHERE {quote_ident('account')} = {quote_literal(tricky)}"
    )
    assert [r["followers"] for r in rows(await store.query(query))] == [5]


@pytest.mark.parametrize(
    ("precision", "epoch", "expected"),
    [
        ("s", "s", T0_S),
        ("ms", "ms", T0_S * 1000 + 123),
        # 1.x reads precision=us as nanoseconds; we must send "u" instead.
        ("us", "u", T0_S * 1_000_000 + 123_456),
        ("ns", "ns", T0_S * 1_000_000_000 + 123_456_000),
    ],
)
async def test_precisions_land_on_the_right_instant(
    influx_db: tuple[str, str],
    http_client: httpx.AsyncClient,
    precision: str,
    epoch: str,
    expected: int,
) -> None:
    url, database = influx_db
    store = InfluxV1Store(http_client, url=url, database=database, precision=precision)
    await store.write([followers("alice", 1, T0 + timedelta(microseconds=123_456))])
    got = rows(await store.query('SELECT "followers" FROM "followers"', epoch=epoch))
    assert got == [{"time": expected, "followers": 1}]


async def test_large_batches_are_split(influx_db: tuple[str, str]) -> None:
    url, database = influx_db
    posts: list[int] = []

    async def count_writes(request: httpx.Request) -> None:
        if request.url.path == "/write":
            posts.append(request.content.count(b"\n") + 1)

    async with httpx.AsyncClient(event_hooks={"request": [count_writes]}) as client:
        store = InfluxV1Store(client, url=url, database=database, max_batch_lines=4)
        await store.write([followers(f"acct{i}", i) for i in range(10)])
        got = rows(await store.query('SELECT COUNT("followers") FROM "followers"'))
    assert posts == [4, 4, 2]
    assert got[0]["count"] == 10


async def test_retention_policy_is_used_and_checked(
    influx_db: tuple[str, str], http_client: httpx.AsyncClient
) -> None:
    url, database = influx_db
    store = InfluxV1Store(http_client, url=url, database=database, retention_policy="autogen")
    await store.check()
    await store.write([followers("alice", 1)])
    got = rows(await store.query('SELECT "followers" FROM "autogen"."followers"'))
    assert got == [{"time": T0_S, "followers": 1}]

    missing = InfluxV1Store(http_client, url=url, database=database, retention_policy="nope")
    with pytest.raises(StoreError, match="no retention policy 'nope'"):
        await missing.check()


async def test_create_database_quotes_the_name(
    influxd: TempInfluxd, http_client: httpx.AsyncClient
) -> None:
    # 1.x refuses `/` and `\` in database names; quotes and spaces must survive quoting.
    name = f"we\"ird 'db' {uuid.uuid4().hex[:6]}"
    store = InfluxV1Store(http_client, url=influxd.url, database=name)
    await store.create_database()
    try:
        await store.check()
        await store.write([followers("alice", 3)])
        assert rows(await store.query('SELECT "followers" FROM "followers"'))[0]["followers"] == 3
    finally:
        await store.query(f"DROP DATABASE {quote_ident(name)}", epoch=None)


# -- errors --------------------------------------------------------------------------------------


async def test_unencodable_point_fails_the_batch_before_sending(store: InfluxV1Store) -> None:
    injection = followers("evil\nfollowers,platform=x,account=fake followers=1i 0", 1)
    with pytest.raises(StoreError) as info:
        await store.write([followers("alice", 1), injection])
    assert info.value.retryable is False
    assert rows(await store.query('SELECT COUNT("followers") FROM "followers"')) == []


async def test_field_type_conflict_is_a_permanent_error(store: InfluxV1Store) -> None:
    await store.write([followers("alice", 100)])
    conflicting = Point("followers", (("account", "alice"),), (("followers", 1.5),), T0)
    with pytest.raises(StoreError) as info:
        await store.write([conflicting])
    assert not isinstance(info.value, StoreAuthError)
    assert info.value.status == 400
    assert info.value.retryable is False
    assert "field type conflict" in str(info.value)


async def test_bad_query_is_a_store_error(store: InfluxV1Store) -> None:
    with pytest.raises(StoreError, match="error parsing query"):
        await store.query("SELEKT nonsense")


async def test_missing_database_is_reported_by_check(
    influxd: TempInfluxd, http_client: httpx.AsyncClient
) -> None:
    store = InfluxV1Store(http_client, url=influxd.url, database="does_not_exist")
    with pytest.raises(StoreError, match="has no database 'does_not_exist'") as info:
        await store.check()
    assert info.value.retryable is False


async def test_unreachable_server_is_retryable(http_client: httpx.AsyncClient) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    store = InfluxV1Store(http_client, url=url, database="db")
    with pytest.raises(StoreError) as write_info:
        await store.write([followers("alice", 1)])
    with pytest.raises(StoreError) as check_info:
        await store.check()
    for info in (write_info, check_info):
        assert info.value.retryable is True
        assert url in str(info.value)


# -- authentication (second influxd with auth-enabled = true) ---------------------------------


async def test_check_with_auth(
    influxd_auth: TempInfluxd, influx_admin: tuple[str, str], http_client: httpx.AsyncClient
) -> None:
    user, password = influx_admin
    good = InfluxV1Store(
        http_client, url=influxd_auth.url, database="authdb", username=user, password=password
    )
    await good.create_database()
    await good.check()
    await good.write([followers("alice", 1)])
    assert rows(await good.query('SELECT "followers" FROM "followers"'))[0]["followers"] == 1

    wrong_password = "hunter2-wrong"
    cases = [
        InfluxV1Store(
            http_client,
            url=influxd_auth.url,
            database="authdb",
            username=user,
            password=wrong_password,
        ),
        InfluxV1Store(
            http_client,
            url=influxd_auth.url,
            database="authdb",
            username="nobody",
            password=wrong_password,
        ),
        InfluxV1Store(http_client, url=influxd_auth.url, database="authdb"),
        InfluxV1Store(http_client, url=influxd_auth.url, database="authdb", token=wrong_password),
    ]
    for bad in cases:
        with pytest.raises(StoreAuthError) as info:
            await bad.check()
        message = str(info.value)
        assert wrong_password not in message and password not in message
        assert influxd_auth.url in message
        assert info.value.retryable is False
        with pytest.raises(StoreAuthError):
            await bad.write([followers("alice", 2)])


async def test_credentials_never_travel_in_the_url(
    influxd_auth: TempInfluxd, influx_admin: tuple[str, str]
) -> None:
    user, password = influx_admin
    seen: list[httpx.Request] = []

    async def record(request: httpx.Request) -> None:
        seen.append(request)

    async with httpx.AsyncClient(event_hooks={"request": [record]}) as client:
        store = InfluxV1Store(
            client, url=influxd_auth.url, database="authdb2", username=user, password=password
        )
        await store.create_database()
        await store.check()
        await store.write([followers("alice", 1)])
    assert seen
    for request in seen:
        assert password not in str(request.url)
        assert request.headers["Authorization"].startswith("Basic ")


def test_redact_url_drops_userinfo_and_query() -> None:
    assert redact_url("https://u:pw@example.com:8086/influx?u=a&p=b") == (
        "https://example.com:8086/influx"
    )
    assert redact_url("http://[::1]:8086") == "http://[::1]:8086"


# -- statuses 1.6 cannot produce: a stub server stands in for proxies, 2.x and 3 Core -----------


@pytest.mark.parametrize(
    ("status", "body", "retryable", "auth"),
    [
        (401, '{"code":"unauthorized","message":"unauthorized access"}', False, True),
        (403, '{"error":"forbidden"}', False, True),
        (404, '{"error":"database not found: \\"db\\""}', True, False),
        (413, '{"error":"Request Entity Too Large"}', False, False),
        (422, '{"code":"unprocessable entity","message":"failure writing points"}', False, False),
        (429, "slow down", True, False),
        (500, "boom", True, False),
        (503, "<html>Service Unavailable</html>", True, False),
    ],
)
async def test_status_mapping(
    httpserver: HTTPServer,
    http_client: httpx.AsyncClient,
    status: int,
    body: str,
    retryable: bool,
    auth: bool,
) -> None:
    httpserver.expect_request("/write", method="POST").respond_with_data(body, status=status)
    store = InfluxV1Store(http_client, url=httpserver.url_for("/"), database="db", token="tok")
    with pytest.raises(StoreError) as info:
        await store.write([followers("alice", 1)])
    assert isinstance(info.value, StoreAuthError) is auth
    assert info.value.status == status
    assert info.value.retryable is retryable
    assert "tok" not in str(info.value)


async def test_token_auth_header_and_v1_params(
    httpserver: HTTPServer, http_client: httpx.AsyncClient
) -> None:
    httpserver.expect_request(
        "/base/write",
        method="POST",
        query_string={"db": "db", "precision": "u", "rp": "short"},
        headers={"Authorization": "Token abc"},
    ).respond_with_data("", status=204)
    store = InfluxV1Store(
        http_client,
        url=httpserver.url_for("/base/"),
        database="db",
        token="abc",
        username="ignored",
        password="ignored",
        precision="us",
        retention_policy="short",
    )
    await store.write([followers("alice", 1)])
    httpserver.check_assertions()
    ((request, _response),) = httpserver.log
    assert request.get_data() == b"followers,account=alice,platform=mastodon followers=1i %d" % (
        T0_S * 1_000_000
    )
