"""Any account name the config accepts round-trips through the real influxd unchanged."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import count

import httpx
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from followerwatch.config.settings import load_config
from followerwatch.errors import ConfigError
from followerwatch.models import Observation
from followerwatch.store.influx_v1 import InfluxV1Store, quote_literal
from followerwatch.store.schema import observation_point

T0 = datetime(2026, 8, 1, tzinfo=UTC)
TICK = count()


def accepted(name: str) -> bool:
    try:
        load_config(
            None,
            {
                "platforms": {"x": {"bearer_token": "t"}},
                "watch": [{"platform": "x", "handle": "someone", "name": name}],
            },
        )
    except ConfigError:
        return False
    return True


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(name=st.text(min_size=1, max_size=40))
async def test_accepted_names_round_trip_as_one_series(
    influx_db: tuple[str, str], name: str
) -> None:
    assume(accepted(name))  # what the config refuses is covered below
    config = load_config(
        None,
        {
            "platforms": {"x": {"bearer_token": "t"}},
            "watch": [{"platform": "x", "handle": "someone", "name": name}],
        },
    )
    account = config.accounts[0]
    when = T0 + timedelta(seconds=next(TICK))
    async with httpx.AsyncClient() as client:
        store = InfluxV1Store(client, url=influx_db[0], database=influx_db[1])
        await store.write([observation_point(Observation(account, when, 42))])
        series = await store.query(
            f"SELECT followers FROM followers WHERE account = {quote_literal(name)}"
            f" AND time = {int(when.timestamp())}s GROUP BY account"
        )
        measurements = await store.query("SHOW MEASUREMENTS")
    assert len(series) == 1 and series[0]["tags"]["account"] == name
    assert series[0]["values"] == [[int(when.timestamp()), 42]]
    assert [row[0] for s in measurements for row in s["values"]] == ["followers"]


@pytest.mark.parametrize("name", ["a\nb", "tab\there", "end\\", "x\\,y", "\x00"])
def test_names_that_could_inject_are_rejected_at_load(name: str) -> None:
    assert not accepted(name)
