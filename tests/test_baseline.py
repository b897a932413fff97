"""The unusual rule's baseline learned from the real influxd: at start-up and after an import."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from followerwatch.clock import ManualClock
from followerwatch.config.settings import load_config
from followerwatch.models import Account, Event, Observation
from followerwatch.rules.base import Rule
from followerwatch.rules.unusual import Summary, Unusual, unpack
from followerwatch.service.app import App
from followerwatch.service.baseline import (
    Seeder,
    counts_query,
    refresh_imported,
    seed_at_start,
    seedable_rules,
)
from followerwatch.service.serve import serve
from followerwatch.sources.replay import ReplaySource
from followerwatch.state.db import Change, StateDB
from followerwatch.store.influx_v1 import InfluxV1Store
from followerwatch.store.schema import observation_point
from service_proc import run_cli as cli

HOSTILE = 'o\'brien "x",=y /^(?:a|b)$/ é\\z'
ACCOUNTS = ["aplusk", "cnnbrk", HOSTILE]
QUIET = "quiet"  # watched, with the rule, and nothing stored
HOURS = 240  # 10 days, hourly
END = datetime(2026, 8, 20, tzinfo=UTC)
START = END - timedelta(hours=HOURS - 1)


def no_route(event: Event) -> tuple[str, ...]:
    return ()


def counts(hour: int, base: int) -> int:
    # A growing account with a daily cycle: a typical hourly change of about +50.
    return base + 50 * hour + (30 if hour % 24 < 12 else 0)


async def write_history(
    store: InfluxV1Store,
    names: Iterable[str],
    *,
    start: datetime = START,
    hours: int = HOURS,
    resolution: int | None = None,
) -> None:
    step = resolution or 1
    points = [
        observation_point(
            Observation(
                Account("x", name, name),
                start + timedelta(hours=h),
                counts(h, 1_000_000 + 1000 * i) // step * step,
                resolution=resolution,
            )
        )
        for i, name in enumerate(names)
        for h in range(hours)
    ]
    await store.write(points)


def rules_for(names: Iterable[str]) -> dict[tuple[str, str], Sequence[Rule]]:
    # The `unusual = true` config key comes with the rule's wiring: built by hand here.
    return {("x", name): (Unusual(),) for name in names}


def summary(state: StateDB, name: str) -> Summary | None:
    return unpack(state.rules.rule_states("x", name).get("unusual"))


@pytest.fixture
async def store(influx_db: tuple[str, str], http_client: httpx.AsyncClient) -> InfluxV1Store:
    return InfluxV1Store(http_client, url=influx_db[0], database=influx_db[1])


@pytest.fixture
def state(tmp_path: Path) -> Iterable[StateDB]:
    db = StateDB(tmp_path / "state.sqlite3")
    yield db
    db.close()


@pytest.mark.parametrize("chunk", [100, 1], ids=["100-per-query", "1-per-query"])
async def test_seeding_learns_stored_counts_and_leaves_accounts_without_any(
    store: InfluxV1Store, state: StateDB, chunk: int
) -> None:
    await write_history(store, ACCOUNTS)
    await write_history(store, ["elsewhere"], start=START - timedelta(days=30))  # out of the window
    names = [*ACCOUNTS, QUIET, "elsewhere"]
    rules = seedable_rules(rules_for(names))
    seeder = Seeder(state, store, rules, ManualClock(END + timedelta(minutes=30)), chunk)
    keys = [("x", n) for n in names]
    with capture_logs() as logs:
        done = await seed_at_start(seeder, keys)
    assert (done.accounts, done.refreshed, done.without_history, done.problem) == (5, 3, 2, None)
    rule = Unusual()
    for name in ACCOUNTS:
        learned = summary(state, name)
        assert learned is not None
        assert learned.readings == HOURS - 1
        assert learned.anchor_time == int(END.timestamp())
        assert learned.anchor_count == counts(HOURS - 1, 1_000_000 + 1000 * ACCOUNTS.index(name))
        assert 40 < learned.level < 60  # about +50/h
        text = state.rules.rule_states("x", name)["unusual"]
        assert not rule.status(text).startswith("too little history"), rule.status(text)
    assert state.rules.rule_states("x", QUIET) == {}
    assert state.rules.rule_states("x", "elsewhere") == {}
    # One line as it starts, one as it ends; nothing per account.
    assert [e["event"] for e in logs] == [
        "learning unusual baselines from InfluxDB",
        "learned unusual baselines",
    ]
    assert logs[1]["refreshed"] == 3 and logs[1]["without_history"] == 2


def test_the_query_quotes_hostile_names() -> None:
    query = counts_query("x", ["a", HOSTILE], START)
    assert '"account" = \'o\\\'brien "x",=y /^(?:a|b)$/ é\\\\z\'' in query


async def test_start_up_skips_ready_summaries_and_keeps_a_live_polls_newer_anchor(
    store: InfluxV1Store, state: StateDB
) -> None:
    await write_history(store, ACCOUNTS)
    rules = seedable_rules(rules_for(ACCOUNTS))
    clock = ManualClock(END + timedelta(hours=2))
    keys = [("x", n) for n in ACCOUNTS]
    assert (await Seeder(state, store, rules, clock).seed(keys, only_missing=True)).refreshed == 3
    again = await Seeder(state, store, rules, clock).seed(keys, only_missing=True)
    assert (again.accounts, again.refreshed) == (0, 0)  # every summary is ready now

    # A poll of aplusk lands while the query is in flight (the service polls while seeding):
    # its learning summary, one hour newer than the stored counts, must not be lost.
    later = int((END + timedelta(hours=1)).timestamp())
    live = Unusual().seeded(None, [(END + timedelta(hours=1), 2_000_000)])
    assert live is not None

    class PollDuringQuery:
        async def query(self, influxql: str, *, epoch: str | None = "s") -> list[dict[str, Any]]:
            change = Change("x", "aplusk", None, {"unusual": live}, ())
            poll = asyncio.ensure_future(state.committer.commit_async([change], no_route))
            answer = await store.query(influxql, epoch=epoch)
            polls.append(poll)
            return answer

    polls: list[asyncio.Future[None]] = []
    await Seeder(state, PollDuringQuery(), rules, clock).seed(keys, only_missing=False)
    await asyncio.gather(*polls)
    learned = summary(state, "aplusk")
    assert learned is not None
    assert learned.readings == HOURS - 1  # learned from the stored counts
    assert (learned.anchor_time, learned.anchor_count) == (later, 2_000_000)  # the poll's
    other = summary(state, "cnnbrk")
    assert other is not None and other.anchor_time == int(END.timestamp())


async def test_influxdb_down_is_a_warning_and_no_state(
    state: StateDB, http_client: httpx.AsyncClient
) -> None:
    down = InfluxV1Store(http_client, url="http://127.0.0.1:9", database="db")
    seeder = Seeder(state, down, seedable_rules(rules_for(ACCOUNTS)), ManualClock(END))
    with capture_logs() as logs:
        done = await seed_at_start(seeder, [("x", n) for n in ACCOUNTS])
    assert done.refreshed == 0 and done.problem is not None and "InfluxDB" in done.problem
    assert [e["log_level"] for e in logs] == ["info", "warning"]
    assert "learns from polls" in logs[1]["event"]
    assert all(state.rules.rule_states("x", n) == {} for n in ACCOUNTS)


async def test_rounded_counts_pass_their_step(store: InfluxV1Store, state: StateDB) -> None:
    await write_history(store, ["channel"], resolution=1000)
    rules = seedable_rules(rules_for(["channel"]))
    done = await Seeder(state, store, rules, ManualClock(END)).seed(
        [("x", "channel")], only_missing=True
    )
    assert done.refreshed == 1
    shown = [counts(h, 1_000_000) // 1000 for h in range(HOURS)]
    moves = sum(1 for a, b in itertools.pairwise(shown) if a != b)
    assert 5 < moves < 30
    # With the step passed on, an unmoved rounded count teaches nothing: one reading per move.
    assert (summary(state, "channel") or Summary()).readings == moves


async def test_import_refreshes_every_imported_account_whatever_its_state(
    store: InfluxV1Store, state: StateDB
) -> None:
    # A ready summary learned from other counts before the backfill: the import replaces it.
    other = [(START + timedelta(hours=h), 5_000 - h) for h in range(100)]
    old = Unusual().seeded(None, other)
    assert old is not None
    await state.committer.commit_async(
        [Change("x", "aplusk", None, {"unusual": old}, ())], no_route
    )
    await write_history(store, ["aplusk", "cnnbrk"])
    done = await refresh_imported(
        state,
        store,
        {**rules_for(["aplusk"]), ("x", "cnnbrk"): ()},  # cnnbrk has not the rule
        [("x", "aplusk"), ("x", "cnnbrk")],
        ManualClock(END + timedelta(hours=1)),
    )
    assert (done.accounts, done.refreshed, done.problem) == (1, 1, None)
    learned = summary(state, "aplusk")
    assert learned is not None and learned.readings == HOURS - 1 and learned.level > 0
    assert state.rules.rule_states("x", "cnnbrk") == {}


async def test_the_service_learns_missing_baselines_in_the_background(
    tmp_path: Path, influx_db: tuple[str, str], store: InfluxV1Store
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(hours=HOURS + 1)
    await write_history(store, ["aplusk"], start=start)
    replay = tmp_path / "replay.csv"
    replay.write_text(
        "timestamp,platform,account,followers\n"
        + "".join(
            f"{(now - timedelta(minutes=3 - i)).isoformat()},x,aplusk,{2_000_000 + i}\n"
            for i in range(3)
        )
    )
    config = load_config(
        None,
        {
            "service": {"data_dir": str(tmp_path / "data")},
            "influxdb": {"url": influx_db[0], "database": influx_db[1]},
            "platforms": {"x": {"interval": 0.05, "replay": {"file": str(replay)}}},
            "watch": [{"platform": "x", "handle": "aplusk"}],
        },
    )
    async with App(config) as app:
        # As `unusual = true` would: the rule set by hand until the config key exists.
        app.pipeline.configure(rules_for(["aplusk"]), {}, {})
        source = app.sources["x"]
        assert isinstance(source, ReplaySource)

        def done() -> bool:
            learned = summary(app.state, "aplusk")
            return source.exhausted and learned is not None and learned.ready()

        with capture_logs() as logs:
            assert await asyncio.wait_for(serve(app, until=done, check_every=0.02), 30)
        learned = summary(app.state, "aplusk")
    assert learned is not None and learned.readings >= HOURS - 1
    # The replay's last count is newer than the stored history: the summary's anchor is it.
    assert (learned.anchor_time, learned.anchor_count) == (int(now.timestamp()) - 60, 2_000_002)
    events = [e["event"] for e in logs if "baseline" in e["event"]]
    assert events == ["learning unusual baselines from InfluxDB", "learned unusual baselines"]


async def test_import_says_how_many_baselines_it_refreshed(
    tmp_path: Path, influx_db: tuple[str, str]
) -> None:
    config = tmp_path / "fw.toml"
    data = tmp_path / "data"
    config.write_text(f"""
[service]
data_dir = "{data}"
log_format = "json"

[influxdb]
url = "{influx_db[0]}"
database = "{influx_db[1]}"

[platforms.x]
bearer_token = "t0ken"

[[watch]]
platform = "x"
handle = "aplusk"
unusual = true

[[watch]]
platform = "x"
handle = "cnnbrk"
""")
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    rows = [
        f"{(end - timedelta(hours=HOURS - 1 - h)).isoformat()},x,{name},{counts(h, 1_000_000)}"
        for name in ("aplusk", "cnnbrk")
        for h in range(HOURS)
    ]
    csv = tmp_path / "history.csv"
    csv.write_text("timestamp,platform,account,followers\n" + "\n".join(rows) + "\n")
    result = cli("import", str(csv), "--config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "refreshed the unusual baseline of 1 account" in result.stdout
    state = StateDB(data / "state.sqlite3")
    try:
        learned = summary(state, "aplusk")
        assert learned is not None and learned.readings == HOURS - 1 and learned.ready()
        assert state.rules.rule_states("x", "cnnbrk") == {}
    finally:
        state.close()
