"""Hostile API bodies (hypothesis): never a crash, never a wrong point, whatever the bytes."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pytest_httpserver import HTTPServer

from followerwatch.clock import ManualClock
from followerwatch.errors import SourceError
from followerwatch.models import Account
from followerwatch.sources.common import MAX_BODY_BYTES
from followerwatch.sources.x import XSource

ACCOUNTS = [Account("x", f"user_{i}", f"user_{i}") for i in range(3)]
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=15), inner, max_size=5)
    ),
    max_leaves=30,
)


USER_LIKE = st.fixed_dictionaries(
    {
        "id": st.one_of(st.text(max_size=5), st.integers(), st.none()),
        "username": st.sampled_from(["user_0", "USER_1", "user_2", "other", ""]) | st.integers(),
        "public_metrics": st.dictionaries(
            st.sampled_from(["followers_count", "following_count", "tweet_count", "post_count"]),
            JSON,
            max_size=4,
        )
        | JSON,
    }
)


BODIES = st.one_of(
    JSON.map(lambda v: json.dumps(v, allow_nan=True)),
    st.fixed_dictionaries({"data": st.lists(USER_LIKE, max_size=4)}, optional={"errors": JSON}).map(
        lambda v: json.dumps(v, allow_nan=True)
    ),
    st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
    st.just('{"data": [{"id": "1", "username": "user_0", "public_metrics": {"followers_count": 5'),
    st.just("<html><body>502 Bad Gateway</body></html>"),
)


async def fetch(httpserver: HTTPServer, body: str, status: int) -> object:
    httpserver.clear()
    httpserver.expect_request("/2/users/by").respond_with_data(
        body, status=status, content_type="application/json"
    )
    clock = ManualClock(datetime(2026, 1, 1, tzinfo=UTC))
    async with httpx.AsyncClient(timeout=5) as client:
        source = XSource(
            client,
            bearer_token="t",
            clock=clock,
            base_url=httpserver.url_for("").rstrip("/"),
            max_wait=0,
        )
        try:
            return await source.fetch(ACCOUNTS)
        except SourceError as exc:
            return exc


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=BODIES, status=st.sampled_from([200, 200, 200, 400, 404, 500, 503]))
async def test_no_crash_and_no_wrong_observation(
    httpserver: HTTPServer, body: str, status: int
) -> None:
    outcome = await fetch(httpserver, body, status)
    if isinstance(outcome, SourceError):
        return
    for obs in outcome.observations:  # type: ignore[attr-defined]
        assert obs.account in ACCOUNTS
        assert type(obs.followers) is int and obs.followers >= 0
        for extra in (obs.following, obs.posts):
            assert extra is None or (type(extra) is int and extra >= 0)
    seen = {o.account for o in outcome.observations} | {  # type: ignore[attr-defined]
        f.account for f in outcome.failures
    }  # type: ignore[attr-defined]
    assert seen == set(ACCOUNTS)  # every account is answered for: a count or a typed failure


async def test_a_huge_body_is_refused(httpserver: HTTPServer) -> None:
    outcome = await fetch(httpserver, "[" + "1," * (MAX_BODY_BYTES // 2) + "1]", 200)
    assert isinstance(outcome, SourceError) and "oversized" in str(outcome)
