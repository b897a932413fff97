"""The outbox: order per account under concurrency, no double sends, batched bookkeeping."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from followerwatch.alerts.outbox import Outbox
from followerwatch.clock import ManualClock, SystemClock
from followerwatch.demo.influxd import free_port
from followerwatch.models import Event, EventKind, EventStatus, Severity
from followerwatch.notify.alertmanager import AlertmanagerConfig, AlertmanagerNotifier
from followerwatch.notify.webhook import WebhookConfig, WebhookNotifier
from followerwatch.state.db import StateDB
from smallfs import small_fs
from test_disk_full import fill

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
Handler = Callable[[dict[str, Any]], Awaitable[int]]


def event(account: str, n: int, status: EventStatus = EventStatus.FIRING) -> Event:
    """Event `n` of an account: firing or resolving its below:1000000 condition."""
    firing = status is EventStatus.FIRING
    return Event(
        id=f"{account}-{n}",
        time=T0 + timedelta(minutes=n),
        platform="x",
        account=account,
        rule="below:1000000",
        kind=EventKind.DROPPED_BELOW if firing else EventKind.BACK_ABOVE,
        value=999_000 if firing else 1_000_500,
        threshold=1_000_000,
        message=f"{account} event {n}",
        severity=Severity.WARNING if firing else Severity.INFO,
        status=status,
    )


def alternating(account: str, count: int) -> list[Event]:
    """firing, resolved, firing, … for one account."""
    return [
        event(account, n, EventStatus.FIRING if n % 2 == 0 else EventStatus.RESOLVED)
        for n in range(count)
    ]


class Receiver:
    """A real aiohttp webhook receiver in the test's loop; `handler` decides each answer."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.arrived: list[str] = []  # event ids, in arrival order
        self.answered: list[tuple[str, int]] = []  # (event id, status), in answer order
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"

    async def _hook(self, request: web.Request) -> web.Response:
        payload = json.loads(await request.read())
        event_id = payload["event"]["id"]
        self.arrived.append(event_id)
        status = await self.handler(payload)
        self.answered.append((event_id, status))
        return web.Response(status=status)

    async def __aenter__(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._runner.cleanup()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=httpx.Timeout(30.0)) as http:
        yield http


def webhook(client: httpx.AsyncClient, url: str, **extra: Any) -> WebhookNotifier:
    config = WebhookConfig.model_validate({"type": "webhook", "name": "hook", "url": url, **extra})
    return WebhookNotifier(config, client)


async def test_a_slow_firing_holds_back_only_its_own_resolution(
    make_state: Callable[[], Any], client: httpx.AsyncClient
) -> None:
    others = [e for account in ("b", "c", "d") for e in alternating(account, 4)]
    slow = alternating("a", 2)  # a-0 firing (slow to deliver), a-1 its resolution
    released = asyncio.Event()

    async def handler(payload: dict[str, Any]) -> int:
        if payload["event"]["id"] == "a-0":
            # Answered only once every other account's events are through: a sequential
            # outbox would wait here forever (and the test time out).
            await released.wait()
        elif sum(1 for i in receiver.arrived if not i.startswith("a-")) == len(others):
            released.set()
        return 204

    state = make_state()
    # Stored interleaved, the slow firing first: stored order is not delivery order any more.
    state.events.add_events([slow[0], *others[:6], slow[1], *others[6:]], lambda e: ["hook"])
    async with Receiver(handler) as receiver:
        outbox = Outbox(state, [webhook(client, receiver.url)], ManualClock(T0))
        sent = await asyncio.wait_for(outbox.deliver_due(), timeout=20)
    assert sent == len(others) + 2
    answered = [i for i, _ in receiver.answered]
    # Every other account's events went out while a-0 was still unanswered ...
    assert answered.index("a-0") == len(others)
    # ... and a-1 (its resolution) arrived only after a-0 was answered.
    assert receiver.arrived.index("a-1") > receiver.arrived.index("a-0")
    assert answered[-1] == "a-1"
    for account in ("b", "c", "d"):  # each account's own order held
        mine = [i for i in receiver.arrived if i.startswith(f"{account}-")]
        assert mine == [f"{account}-{n}" for n in range(4)]
    assert state.deliveries.delivery_counts() == {"delivered": len(others) + 2}
    state.close()


async def test_a_retrying_head_blocks_only_its_account(
    make_state: Callable[[], Any], client: httpx.AsyncClient
) -> None:
    async def handler(payload: dict[str, Any]) -> int:
        return 503 if payload["event"]["account"] == "a" else 204

    state = make_state()
    state.events.add_events([*alternating("a", 2), *alternating("b", 2)], lambda e: ["hook"])
    clock = ManualClock(T0)
    async with Receiver(handler) as receiver:
        outbox = Outbox(state, [webhook(client, receiver.url)], clock)
        assert await outbox.deliver_due() == 2
        # a-1 never went out: its firing waits for a retry, and it waits behind it.
        assert sorted(receiver.arrived) == ["a-0", "b-0", "b-1"]
        due = outbox.next_due()
        assert due is not None and due > clock.now().timestamp()
    assert state.deliveries.delivery_counts() == {"delivered": 2, "pending": 2}
    state.close()


async def test_concurrency_one_keeps_the_stored_order(
    make_state: Callable[[], Any], client: httpx.AsyncClient
) -> None:
    async def handler(payload: dict[str, Any]) -> int:
        return 204

    stored = [event(account, n) for n in range(3) for account in ("a", "b", "c")]
    state = make_state()
    state.events.add_events(stored, lambda e: ["hook"])
    async with Receiver(handler) as receiver:
        notifier = webhook(client, receiver.url, concurrency=1)
        assert await Outbox(state, [notifier], ManualClock(T0)).deliver_due() == len(stored)
    assert receiver.arrived == [e.id for e in stored]
    state.close()


async def test_concurrent_passes_never_send_a_delivery_twice(
    make_state: Callable[[], Any], client: httpx.AsyncClient
) -> None:
    async def handler(payload: dict[str, Any]) -> int:
        await asyncio.sleep(0.01)  # keeps requests in flight while the other pass looks
        return 204

    accounts = [f"u{i}" for i in range(20)]
    events = [e for account in accounts for e in alternating(account, 4)]
    state = make_state()
    state.events.add_events(events, lambda e: ["hook"])
    async with Receiver(handler) as receiver:
        outbox = Outbox(state, [webhook(client, receiver.url, concurrency=4)], ManualClock(T0))
        first, second = await asyncio.gather(outbox.deliver_due(), outbox.deliver_due())
        # Whatever one pass left (lanes the other held) the next pass delivers.
        assert await outbox.drain(timeout=10)
    assert sorted(receiver.arrived) == sorted(e.id for e in events)  # each exactly once
    assert first + second <= len(events)
    for account in accounts:
        mine = [i for i in receiver.arrived if i.startswith(f"{account}-")]
        assert mine == [f"{account}-{n}" for n in range(4)]
    assert state.deliveries.delivery_counts() == {"delivered": len(events)}
    state.close()


async def test_alertmanager_gets_one_post_for_many_accounts(
    tmp_path: Path, httpserver: HTTPServer
) -> None:
    posts: list[list[dict[str, Any]]] = []

    def alerts(request: Request) -> Response:
        if request.method == "POST":
            posts.append(json.loads(request.get_data()))
        return Response("[]", status=200, content_type="application/json")

    httpserver.expect_request("/api/v2/alerts").respond_with_handler(alerts)
    events = [event(f"u{i}", 0) for i in range(30)]
    state = StateDB(tmp_path / "state.sqlite3")
    state.events.add_events(events, lambda e: ["am"])
    config = AlertmanagerConfig.model_validate(
        {"type": "alertmanager", "name": "am", "url": httpserver.url_for("").rstrip("/")}
    )
    async with httpx.AsyncClient() as http:
        notifier = AlertmanagerNotifier(config, http, ManualClock(T0))
        assert await Outbox(state, [notifier], ManualClock(T0)).deliver_due() == 30
    # One POST delivered all 30; the one after it is the periodic re-announcement of the
    # active alerts, which the outbox makes once per resend_interval.
    assert len(posts) == 2
    assert sorted(a["labels"]["account"] for a in posts[0]) == sorted(e.account for e in events)
    assert all("endsAt" not in a for a in posts[0])
    gets = [r for r, _ in httpserver.log if r.method == "GET"]
    assert len(gets) == 1  # one alertname in the batch: one look-up of its active alerts
    assert state.deliveries.delivery_counts() == {"delivered": 30}
    state.close()


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from datetime import UTC, datetime, timedelta
    import httpx
    from followerwatch.clock import SystemClock
    from followerwatch.models import Event, EventKind, EventStatus
    from followerwatch.notify.webhook import WebhookConfig, WebhookNotifier
    from followerwatch.alerts.outbox import Outbox
    from followerwatch.state.db import StateDB

    async def main(path, url, n):
        state = StateDB(Path(path))
        t0 = datetime(2026, 3, 1, tzinfo=UTC)
        events = [
            Event(f"u{i}-0", t0 + timedelta(seconds=i), "x", f"u{i}", "below:10",
                  EventKind.DROPPED_BELOW, 9, 10, "m", status=EventStatus.FIRING)
            for i in range(n)
        ]
        state.events.add_events(events, lambda e: ["hook"])
        print("stored", flush=True)
        config = WebhookConfig.model_validate({"type": "webhook", "name": "hook", "url": url})
        async with httpx.AsyncClient(timeout=600) as client:
            outbox = Outbox(state, [WebhookNotifier(config, client)], SystemClock())
            await outbox.deliver_due()

    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
    """
)


def counts(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as db:
        return dict(db.execute("SELECT status, count(*) FROM deliveries GROUP BY status"))


async def test_a_crash_mid_batch_leaves_the_unsent_pending(
    tmp_path: Path, client: httpx.AsyncClient
) -> None:
    total, quick = 40, 10
    hold = asyncio.Event()

    async def first_run(payload: dict[str, Any]) -> int:
        if len(receiver.answered) < quick:
            return 204
        await hold.wait()  # the rest hang until the process is gone
        return 204

    path = tmp_path / "state.sqlite3"
    async with Receiver(first_run) as receiver:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path), receiver.url, str(total)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            for _ in range(400):
                await asyncio.sleep(0.05)
                assert child.poll() is None, "the delivering process died by itself"
                if len(receiver.answered) >= quick and counts(path).get("delivered") == quick:
                    break
            assert len(receiver.arrived) > quick, "the batch should still be in flight"
            os.kill(child.pid, signal.SIGKILL)  # no chance to record anything more
        finally:
            child.kill()
            child.wait(10)
            hold.set()
    answered_first = {i for i, status in receiver.answered if status == 204}
    assert counts(path) == {"delivered": quick, "pending": total - quick}
    state = StateDB(path)
    recorded_first = {
        e.id for e, status in state.events.recent(1000) if status["hook"] == "delivered"
    }
    assert recorded_first <= answered_first
    assert all(d.attempts == 0 for d in state.deliveries.pending("hook", 1000))

    async def second_run(payload: dict[str, Any]) -> int:
        return 204

    async with Receiver(second_run) as again:
        assert await Outbox(state, [webhook(client, again.url)], ManualClock(T0)).drain(10)
    # Nothing recorded as delivered went again; everything else did, once.
    assert len(again.arrived) == total - quick == len(set(again.arrived))
    assert set(again.arrived).isdisjoint(recorded_first)
    assert counts(path) == {"delivered": total}
    state.close()


OLD_SCHEMA = """
CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, time TEXT NOT NULL,
    platform TEXT NOT NULL, account TEXT NOT NULL, rule TEXT NOT NULL, kind TEXT NOT NULL,
    value INTEGER NOT NULL, threshold INTEGER NOT NULL, message TEXT NOT NULL,
    severity TEXT NOT NULL, status TEXT NOT NULL, labels TEXT NOT NULL,
    stored INTEGER NOT NULL DEFAULT 0);
CREATE TABLE deliveries (
    event_id TEXT NOT NULL, notifier TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0, next_attempt REAL NOT NULL DEFAULT 0, last_error TEXT,
    PRIMARY KEY (event_id, notifier));
INSERT INTO events (id, time, platform, account, rule, kind, value, threshold, message,
    severity, status, labels)
    VALUES ('old-1', '2026-03-01T12:00:00+00:00', 'x', 'a', 'below:1000000', 'dropped_below',
    999000, 1000000, 'stored by an older version', 'warning', 'firing', '[]');
INSERT INTO deliveries (event_id, notifier, attempts) VALUES ('old-1', 'hook', 2);
"""


async def test_a_database_from_before_enrichment_is_migrated_and_delivers(
    tmp_path: Path, client: httpx.AsyncClient
) -> None:
    path = tmp_path / "state.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(OLD_SCHEMA)
    state = StateDB(path)
    # Already attempted by the old version: its text is final, no projection is added.
    assert state.deliveries.unenriched() == []
    state.close()
    state = StateDB(path)  # a second open finds the columns and changes nothing

    async def handler(payload: dict[str, Any]) -> int:
        return 204

    async with Receiver(handler) as receiver:
        assert await Outbox(state, [webhook(client, receiver.url)], ManualClock(T0)).drain(10)
    assert receiver.arrived == ["old-1"]
    [(stored, status)] = state.events.recent()
    assert stored.message == "stored by an older version" and status == {"hook": "delivered"}
    state.events.add_events([event("b", 0)], lambda e: ["hook"])
    assert [e.id for e in state.deliveries.unenriched()] == ["b-0"]  # new events do get enriched
    state.close()


# The events table as the version before issue 20 left it: enriched, but no score column.
SCORELESS_SCHEMA = OLD_SCHEMA.replace(
    "stored INTEGER NOT NULL DEFAULT 0);",
    "stored INTEGER NOT NULL DEFAULT 0, enriched INTEGER NOT NULL DEFAULT 0, projection TEXT);",
    1,
)


def scored(account: str, n: int, score: float) -> Event:
    """Event `n` of an account, as the unusual rule fires it: with a score."""
    return replace(
        event(account, n), rule="unusual", kind=EventKind.UNUSUAL_DROP, value=-4_200, score=score
    )


async def delivered(state: StateDB, client: httpx.AsyncClient) -> list[dict[str, Any]]:
    """The `event` of every payload the outbox's webhook delivers from `state`, in order."""
    payloads: list[dict[str, Any]] = []

    async def handler(payload: dict[str, Any]) -> int:
        payloads.append(payload["event"])
        return 204

    async with Receiver(handler) as receiver:
        assert await Outbox(state, [webhook(client, receiver.url)], ManualClock(T0)).drain(10)
    return payloads


async def test_a_score_survives_a_restart_and_reaches_the_receiver(
    tmp_path: Path, client: httpx.AsyncClient
) -> None:
    path = tmp_path / "state.sqlite3"
    state = StateDB(path)
    state.events.add_events([scored("a", 0, -46.25), event("a", 1)], lambda e: ["hook"])
    state.close()  # stopped before delivering anything
    state = StateDB(path)
    payloads = await delivered(state, client)
    assert [(p["id"], p["score"]) for p in payloads] == [("a-0", -46.25), ("a-1", None)]
    # What goes to InfluxDB is read back from the same rows.
    assert [e.score for e in state.events.unstored_events()] == [-46.25, None]
    state.close()


async def test_a_database_from_before_the_score_is_migrated_and_delivers(
    tmp_path: Path, client: httpx.AsyncClient
) -> None:
    path = tmp_path / "state.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(SCORELESS_SCHEMA)
    state = StateDB(path)
    [(old, _)] = state.events.recent()
    assert old.score is None and old.message == "stored by an older version"
    state.events.add_events([scored("b", 0, 12.0)], lambda e: ["hook"])
    state.close()
    state = StateDB(path)  # a second open finds the column and changes nothing
    with sqlite3.connect(path) as db:
        columns = [row[1] for row in db.execute("PRAGMA table_info(events)")]
    assert columns.count("score") == 1
    payloads = await delivered(state, client)
    assert {p["id"]: p["score"] for p in payloads} == {"old-1": None, "b-0": 12.0}
    state.close()


def test_alertmanager_annotates_a_score() -> None:
    config = AlertmanagerConfig.model_validate(
        {"type": "alertmanager", "url": "http://127.0.0.1:9093"}
    )
    notifier = AlertmanagerNotifier(config, httpx.AsyncClient())
    assert "score" not in notifier.annotations(event("a", 0))
    annotated = notifier.annotations(scored("a", 0, -46.0))
    assert annotated["score"] == "-46.0"
    assert annotated["summary"] == "a event 0"  # the message is what it was


def test_alertmanager_annotates_a_projection() -> None:
    from followerwatch.models import Projection

    config = AlertmanagerConfig.model_validate(
        {"type": "alertmanager", "url": "http://127.0.0.1:9093"}
    )
    notifier = AlertmanagerNotifier(config, httpx.AsyncClient())
    projection = Projection("below", 950_000, 176_400.0, T0 + timedelta(hours=49), -24_000, 1.0)
    plain = notifier.annotations(event("a", 0))
    assert "projection" not in plain
    annotated = notifier.annotations(replace(event("a", 0), projection=projection))
    assert annotated["projection"] == (
        "at the current rate the count drops below 950,000 in about 2 d 1 h"
    )
    assert annotated["projection_eta_seconds"] == "176400"


def test_events_routed_nowhere_are_never_enrichment_work(tmp_path: Path) -> None:
    state = StateDB(tmp_path / "state.sqlite3")
    state.events.add_events(
        [event("a", 0), event("b", 0)], lambda e: [] if e.account == "a" else ["hook"]
    )
    assert [e.id for e in state.deliveries.unenriched()] == ["b-0"]
    state.close()


async def test_a_full_disk_that_refuses_the_outcome_causes_no_resend_storm(
    tmp_path: Path, client: httpx.AsyncClient
) -> None:
    async def ok(payload: dict[str, Any]) -> int:
        return 200

    with small_fs(tmp_path / "data", "2m") as data:
        state = StateDB(data / "state.sqlite3")
        state.events.add_events([event("ann", 0)], lambda e: ["hook"])
        state.deliveries.set_enrichment({"ann-0": None})
        fill(data / "filler")  # the outcome of the delivery cannot be written
        async with Receiver(ok) as receiver:
            outbox = Outbox(state, [webhook(client, receiver.url)], SystemClock())
            stop = asyncio.Event()
            loop = asyncio.create_task(outbox.run(stop))
            while not receiver.answered:
                await asyncio.sleep(0.01)
            await asyncio.sleep(1.5)  # a storm re-sends every 50 ms
            during = len(receiver.arrived)
            (data / "filler").unlink()  # space again: the outcome is recorded
            while state.deliveries.delivery_counts().get("pending", 0):
                await asyncio.sleep(0.01)
            stop.set()
            await loop
        counts = state.deliveries.delivery_counts()
        state.close()
    assert during == 1
    assert receiver.arrived == ["ann-0"]
    assert counts == {"delivered": 1}
