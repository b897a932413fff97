"""InfluxV2Store through a test-only /api/v2/write gateway that stores into the real influxd."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from followerwatch.demo.influxd import TempInfluxd, free_port
from followerwatch.errors import StoreAuthError, StoreError
from followerwatch.models import Point
from followerwatch.store.base import Store
from followerwatch.store.influx_v1 import V1_PRECISION, InfluxV1Store
from followerwatch.store.influx_v2 import InfluxV2Store

ORG = "followers-org"
TOKEN = "test-token-123"
T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
T0_S = 1714564800


def _json(status: int, code: str, message: str) -> Response:
    body = json.dumps({"code": code, "message": message})
    return Response(body, status=status, content_type="application/json; charset=utf-8")


@dataclass
class Gateway:
    """Speaks enough of InfluxDB 2.x's /api/v2/write to test a client, and stores into influxd."""

    influxd_url: str
    buckets: set[str] = field(default_factory=set)
    seen: list[dict[str, str]] = field(default_factory=list)

    def handle_write(self, request: Request) -> Response:
        args = request.args
        encoding = request.headers.get("Content-Encoding", "")
        self.seen.append({"encoding": encoding, "precision": args.get("precision", "")})
        if request.headers.get("Authorization") != f"Token {TOKEN}":
            return _json(401, "unauthorized", "unauthorized access")
        if args.get("org") != ORG:
            return _json(404, "not found", f'organization name "{args.get("org")}" not found')
        bucket = args.get("bucket", "")
        if bucket not in self.buckets:
            return _json(404, "not found", f'bucket "{bucket}" not found')
        precision = args.get("precision", "ns")
        if precision not in V1_PRECISION:
            return _json(400, "invalid", f"invalid precision {precision!r}")
        body = request.get_data()
        if encoding == "gzip":
            body = gzip.decompress(body)
        if not body:
            return _json(400, "invalid", "writing requires points")
        answer = httpx.post(
            f"{self.influxd_url}/write",
            params={"db": bucket, "precision": V1_PRECISION[precision]},
            content=body,
            timeout=10,
        )
        if answer.status_code == 400:
            # 2.x reports points it could not store as 422, where 1.x says 400.
            message = answer.json().get("error", "")
            return _json(422, "unprocessable entity", f"failure writing points: {message}")
        return Response(answer.content, status=answer.status_code)


@pytest.fixture
def gateway(httpserver: HTTPServer, influxd: TempInfluxd) -> Iterator[Gateway]:
    gw = Gateway(influxd.url)
    httpserver.expect_request("/api/v2/write", method="POST").respond_with_handler(gw.handle_write)
    yield gw
    httpserver.clear()


@pytest.fixture
def v1(influx_db: tuple[str, str], http_client: httpx.AsyncClient) -> InfluxV1Store:
    url, database = influx_db
    return InfluxV1Store(http_client, url=url, database=database)


def make_store(httpserver: HTTPServer, bucket: str, **kwargs: object) -> InfluxV2Store:
    options: dict[str, object] = {"org": ORG, "bucket": bucket, "token": TOKEN}
    options.update(kwargs)
    return InfluxV2Store(url=httpserver.url_for("/"), **options)  # type: ignore[arg-type]


def followers(account: str, count: int, when: datetime = T0) -> Point:
    return Point(
        "followers",
        (("platform", "bluesky"), ("account", account)),
        (("followers", count), ("posts", 3)),
        when,
    )


def rows(series: list[dict[str, object]]) -> list[dict[str, object]]:
    out = []
    for item in series:
        columns = item["columns"]
        assert isinstance(columns, list)
        for values in item["values"]:  # type: ignore[attr-defined]
            out.append(dict(zip(columns, values, strict=True)))
    return out


@pytest.mark.parametrize("enable_gzip", [False, True], ids=["plain", "gzip"])
async def test_points_land_in_influxd(
    httpserver: HTTPServer,
    gateway: Gateway,
    v1: InfluxV1Store,
    enable_gzip: bool,
) -> None:
    gateway.buckets.add(v1.database)
    store = make_store(httpserver, v1.database, enable_gzip=enable_gzip, max_batch_lines=2)
    store_protocol: Store = store
    try:
        await store_protocol.check()
        await store.write(
            [
                followers("alice", 10),
                followers('we,ird "one" = x', 20),
                followers("carol", 30, T0 + timedelta(seconds=5, milliseconds=999)),
            ]
        )
    finally:
        await store.close()

    got = rows(await v1.query('SELECT * FROM "followers" ORDER BY time'))
    assert sorted((r["time"], r["account"], r["followers"], r["posts"]) for r in got) == [
        (T0_S, "alice", 10, 3),
        (T0_S, 'we,ird "one" = x', 20, 3),
        (T0_S + 5, "carol", 30, 3),
    ]
    types = {r["fieldKey"]: r["fieldType"] for r in rows(await v1.query("SHOW FIELD KEYS"))}
    assert types == {"followers": "integer", "posts": "integer"}
    writes = [s for s in gateway.seen if s["precision"]]
    assert len(writes) == 3  # check() + two chunks of at most 2 lines
    assert {s["precision"] for s in writes} == {"s"}
    assert {s["encoding"] for s in writes} == ({"gzip"} if enable_gzip else {""})


async def test_millisecond_precision(
    httpserver: HTTPServer, gateway: Gateway, v1: InfluxV1Store
) -> None:
    gateway.buckets.add(v1.database)
    store = make_store(httpserver, v1.database, precision="ms")
    try:
        await store.write([followers("alice", 1, T0 + timedelta(microseconds=123_456))])
    finally:
        await store.close()
    got = rows(await v1.query('SELECT "followers" FROM "followers"', epoch="ms"))
    assert got == [{"time": T0_S * 1000 + 123, "followers": 1}]


async def test_bad_token_is_an_auth_error(
    httpserver: HTTPServer, gateway: Gateway, v1: InfluxV1Store
) -> None:
    gateway.buckets.add(v1.database)
    store = make_store(httpserver, v1.database, token="wrong-token-456")
    try:
        for call in (store.check(), store.write([followers("alice", 1)])):
            with pytest.raises(StoreAuthError) as info:
                await call
            assert info.value.status == 401
            assert "wrong-token-456" not in str(info.value)
            assert "unauthorized access" in str(info.value)
    finally:
        await store.close()
    assert rows(await v1.query('SELECT COUNT("followers") FROM "followers"')) == []


async def test_unknown_bucket_and_org(httpserver: HTTPServer, gateway: Gateway) -> None:
    for store, message in (
        (make_store(httpserver, "nope"), 'bucket "nope" not found'),
        (make_store(httpserver, "nope", org="other"), 'organization name "other" not found'),
    ):
        try:
            with pytest.raises(StoreError) as info:
                await store.check()
            assert info.value.status == 404
            assert message in str(info.value)
        finally:
            await store.close()


async def test_rejected_points_are_permanent(
    httpserver: HTTPServer, gateway: Gateway, v1: InfluxV1Store
) -> None:
    gateway.buckets.add(v1.database)
    store = make_store(httpserver, v1.database)
    conflicting = Point("followers", (("account", "alice"),), (("followers", 1.5),), T0)
    try:
        await store.write([followers("alice", 1)])
        with pytest.raises(StoreError) as info:
            await store.write([conflicting])
    finally:
        await store.close()
    assert info.value.status == 422
    assert info.value.retryable is False
    assert "field type conflict" in str(info.value)


async def test_unencodable_point_is_never_sent(httpserver: HTTPServer, gateway: Gateway) -> None:
    gateway.buckets.add("b")
    store = make_store(httpserver, "b")
    try:
        with pytest.raises(StoreError, match="cannot encode point") as info:
            await store.write([followers("x\ny", 1)])
    finally:
        await store.close()
    assert info.value.retryable is False
    assert gateway.seen == []


async def test_server_errors_and_network_errors_are_retryable(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/api/v2/write").respond_with_json(
        {"code": "unavailable", "message": "service unavailable"}, status=503
    )
    down = InfluxV2Store(
        url=f"http://127.0.0.1:{free_port()}", org=ORG, bucket="b", token=TOKEN, timeout_s=2
    )
    stores = [make_store(httpserver, "b"), down]
    try:
        for store in stores:
            with pytest.raises(StoreError) as info:
                await store.write([followers("alice", 1)])
            assert info.value.retryable is True
            assert not isinstance(info.value, StoreAuthError)
            assert TOKEN not in str(info.value)
    finally:
        for store in stores:
            await store.close()
