"""The app is wired from real parts built in order: no lambda stands in for one built later."""

from __future__ import annotations

import ast
import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import followerwatch.service.app
import followerwatch.service.serve
from followerwatch.alerts.enrich import ProjectionEnricher
from followerwatch.alerts.sink import EventSink
from followerwatch.config.settings import Config, load_config
from followerwatch.models import Event, EventKind, EventStatus
from followerwatch.service.app import App, Reconfigure
from followerwatch.service.groups import Group
from followerwatch.service.serve import Running
from followerwatch.state.db import StateDB

HANDLE = "user1.bsky.social"
KEY = ("bluesky", HANDLE)


@pytest.mark.parametrize("module", [followerwatch.service.app, followerwatch.service.serve])
def test_no_lambda_in_the_wiring(module: Any) -> None:
    tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
    lines = [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Lambda)]
    assert lines == []


def config(tmp_path: Path, below: int) -> Config:
    return load_config(
        None,
        {
            "service": {"data_dir": str(tmp_path / "data")},
            "influxdb": {"url": "http://127.0.0.1:9", "database": "db"},
            "platforms": {"bluesky": {"base_url": "http://127.0.0.1:9"}},
            "watch": [{"platform": "bluesky", "handle": HANDLE, "below": below}],
        },
    )


async def test_threshold_lines_are_one_holder_the_pipeline_updates_on_a_reload(
    tmp_path: Path,
) -> None:
    async with App(config(tmp_path, 100_000)) as app:
        assert app.pipeline.thresholds is app.thresholds
        assert app.pipeline.stats is app.poll_stats
        assert isinstance(app.outbox.enricher, ProjectionEnricher)
        assert app.thresholds.of(*KEY) == (("below", 100_000),)
        app.apply_config(config(tmp_path, 200_000))
        assert app.thresholds.of(*KEY) == (("below", 200_000),)
        assert app.thresholds.current() == {KEY: (("below", 200_000),)}
        assert app.thresholds.of("bluesky", "someone.else") == ()
        # Alert projections read the same holder, so they see the reloaded lines.
        assert app.outbox.enricher._lines() is app.thresholds.current()


async def test_reconfigure_applies_the_config_and_hands_over_the_new_groups(
    tmp_path: Path,
) -> None:
    handed: list[Sequence[Group]] = []
    async with App(config(tmp_path, 100_000)) as app:
        Reconfigure(app, handed.append)(config(tmp_path, 300_000))
        assert app.thresholds.of(*KEY) == (("below", 300_000),)
        assert handed == [app.groups]


def test_the_event_sink_stores_an_event_with_its_route(tmp_path: Path) -> None:
    state = StateDB(tmp_path / "state.sqlite3")
    try:
        event = Event(
            "e1",
            datetime(2026, 3, 1, tzinfo=UTC),
            "followerwatch",
            "spool",
            "spool",
            EventKind.TEST,
            0,
            0,
            "m",
            status=EventStatus.ONCE,
        )
        EventSink(state.events, lambda e: ["hook"]).raise_event(event)
        assert [d.event.id for d in state.deliveries.pending("hook")] == ["e1"]
        assert state.deliveries.pending("other") == []
    finally:
        state.close()


async def test_running_until_the_stop_event() -> None:
    stop = asyncio.Event()
    running = Running(stop)
    assert running()
    stop.set()
    assert not running()
