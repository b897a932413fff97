"""Campaigns: start and end events once each, the impact report delivered through the outbox."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from pytest_httpserver import HTTPServer

from followerwatch.alerts.outbox import Outbox
from followerwatch.analysis.campaign_config import CampaignConfig
from followerwatch.analysis.campaigns import CampaignRunner
from followerwatch.clock import ManualClock
from followerwatch.models import EventKind
from followerwatch.notify.webhook import WebhookConfig, WebhookNotifier
from followerwatch.state.db import StateDB
from followerwatch.store.influx_v1 import InfluxV1Store
from test_impact import END, START, history, stored


async def test_campaign_events_and_report(
    tmp_path: Path, influx_db: tuple[str, str], httpserver: HTTPServer
) -> None:
    await stored(influx_db, "aplusk", history(400, 150, 7, drop=18_000))
    await stored(influx_db, "cnnbrk", history(300, 150, 8, base=900_000))
    campaign = CampaignConfig.model_validate(
        {
            "name": "unfollow-day",
            "accounts": ["x/aplusk"],
            "controls": ["x/cnnbrk"],
            "start": START.isoformat(),
            "end": END.isoformat(),
            "goal": {"below": 1_070_000},
        }
    )
    httpserver.expect_request("/hook", method="POST").respond_with_data("", status=204)
    clock = ManualClock(START - timedelta(hours=1))
    state = StateDB(tmp_path / "state.sqlite3")
    async with httpx.AsyncClient() as client:
        store = InfluxV1Store(client, url=influx_db[0], database=influx_db[1])
        runner = CampaignRunner([campaign], state, store, clock, route=lambda e: ["hook"])
        assert await runner.check() == []
        clock.advance(2 * 3600)
        assert [e.kind for e in await runner.check()] == [EventKind.CAMPAIGN_STARTED]
        assert await runner.check() == []
        clock.advance(24 * 3600)
        ended = await runner.check()
        assert [e.kind for e in ended] == [EventKind.CAMPAIGN_ENDED, EventKind.CAMPAIGN_REPORT]
        again = CampaignRunner([campaign], state, store, clock, route=lambda e: ["hook"])
        assert await again.check() == []  # a restart repeats nothing
        hook = WebhookConfig.model_validate(
            {"type": "webhook", "name": "hook", "url": httpserver.url_for("/hook")}
        )
        outbox = Outbox(state, [WebhookNotifier(hook, client)], clock)
        assert await outbox.drain(timeout=10)
    state.close()
    kinds = [json.loads(r.get_data())["event"]["kind"] for r, _ in httpserver.log]
    assert kinds == ["campaign_started", "campaign_ended", "campaign_report"]
    report = json.loads(httpserver.log[-1][0].get_data())["event"]["message"]
    assert report.startswith("the campaign cost @aplusk about 1")
    assert "goal below 1,070,000: reached at 2009-04-27" in report


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        ({"end": "2009-04-26T00:00:00Z"}, "end must be after start"),
        ({"accounts": ["aplusk"]}, "platform/name"),
        ({"start": "2009-04-27T00:00:00"}, "time zone"),
        ({"goal": {"below": 1, "above": 2}}, "exactly one of below or above"),
    ],
)
def test_bad_campaigns_are_rejected(bad: dict[str, object], problem: str) -> None:
    raw = {
        "name": "c",
        "accounts": ["x/a"],
        "start": "2009-04-27T00:00:00Z",
        "end": "2009-04-28T00:00:00Z",
        **bad,
    }
    with pytest.raises(ValueError, match=problem):
        CampaignConfig.model_validate(raw)


async def test_a_campaign_is_run_only_by_the_replica_that_owns_its_key(tmp_path: Path) -> None:
    campaign = CampaignConfig.model_validate(
        {
            "name": "unfollow-day",
            "accounts": ["x/aplusk"],
            "start": START.isoformat(),
            "end": END.isoformat(),
        }
    )
    state = StateDB(tmp_path / "state.sqlite3")
    clock = ManualClock(START + timedelta(hours=1))
    async with httpx.AsyncClient() as client:
        store = InfluxV1Store(client, url="http://127.0.0.1:9", database="unused")
        keys: list[tuple[str, str]] = []

        def elsewhere(key: tuple[str, str]) -> bool:
            keys.append(key)
            return False

        other = CampaignRunner([campaign], state, store, clock, lambda e: [], elsewhere)
        assert await other.check() == []
        assert keys == [("followerwatch", "campaign:unfollow-day")]
        owner = CampaignRunner([campaign], state, store, clock, lambda e: [], lambda key: True)
        assert [e.kind for e in await owner.check()] == [EventKind.CAMPAIGN_STARTED]
    state.close()
