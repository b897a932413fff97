"""`followerwatch demo`: an illustrative April 2009 replay through the real pipeline.

While it replays, the demo tells the story (demo_story.py) with the alerts its webhook receiver
gets; its InfluxDB is a URL or a throwaway influxd (demo_influxd.py).
"""

from __future__ import annotations

import asyncio
import json
import signal
import tempfile
from contextlib import ExitStack, suppress
from datetime import timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from followerwatch.analysis.unusual import format_score
from followerwatch.config.settings import load_config
from followerwatch.demo.influxd import InfluxdError, free_port
from followerwatch.demo.influxd_run import (
    INTERRUPTED,
    DemoError,
    influxd_on_path,
    interruptible,
    signals_ignored,
    spawn,
)
from followerwatch.demo.story import (
    UNFOLLOW_END,
    UNFOLLOW_START,
    Narrator,
    falls,
    narrate,
    story,
)
from followerwatch.errors import StoreError
from followerwatch.models import at_handle
from followerwatch.sources.replay import read_replay
from followerwatch.store.influx_v1 import InfluxV1Store

DATABASE = "followerwatch_demo"
REPLAY = "april2009.csv"


def replay_file() -> Path:
    """The packaged replay CSV."""
    return Path(str(resources.files("followerwatch") / "data" / REPLAY))


def demo_settings(
    influx_url: str, data_dir: Path, seconds: float, webhook_url: str
) -> dict[str, Any]:
    """The demo's config, exactly as a user would write it in TOML."""
    rows = read_replay(replay_file(), "x")
    times = [t for series in rows.values() for t, _ in series]
    span = (max(times) - min(times)).total_seconds()
    return {
        # No ops endpoint: it would live only as long as the replay, and 9108 may be taken.
        "service": {"data_dir": str(data_dir), "log_format": "console", "ops_address": ""},
        "influxdb": {"url": influx_url, "database": DATABASE, "create_database": True},
        "platforms": {
            "x": {
                "interval": 0.25,
                "replay": {"file": str(replay_file()), "speed": span / max(seconds, 1.0)},
            }
        },
        # The narrator prints what the webhook receiver gets, so alerts show once, in story order.
        "notifiers": [{"type": "webhook", "url": webhook_url}],
        "watch": [
            {
                "platform": "x",
                "handle": "aplusk",
                "below": 1_000_000,
                "above": 1_000_000,
                "hysteresis": 1_000,
                "approaching": "12h",
                "labels": {"story": "unfollow-day"},
                # How many unfollowed: announce losing 15,000 within a day.
                "changes": [{"drop": 15_000, "window": "24h"}],
                # Nothing to tune: the 13 days before the Unfollow Day are its own normal.
                "unusual": True,
            },
            {
                "platform": "x",
                "handle": "cnnbrk",
                "below": 1_000_000,
                "above": 1_000_000,
                "hysteresis": 1_000,
                "approaching": "12h",
            },
        ],
    }


class Receiver:
    """A minimal local webhook receiver so the demo shows real HTTP delivery."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.port = free_port()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.decode("latin-1").split("\r\n"):
            if line.lower().startswith("content-length:"):
                length = int(line.split(":", 1)[1])
        body = await reader.readexactly(length)
        self.received.append(json.loads(body))
        writer.write(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
        await writer.drain()
        writer.close()

    async def start(self) -> asyncio.Server:
        """Listen on 127.0.0.1:port."""
        return await asyncio.start_server(self._handle, "127.0.0.1", self.port)


async def _run(settings: dict[str, Any], receiver: Receiver, narrator: Narrator) -> bool:
    """Replay through the service; False if SIGINT/SIGTERM stopped it before the end."""
    from followerwatch.service.app import App
    from followerwatch.service.serve import serve
    from followerwatch.sources.replay import ReplaySource

    config = load_config(None, settings)
    server = await receiver.start()
    try:
        async with App(config) as app:
            source = app.sources["x"]
            assert isinstance(source, ReplaySource)
            accounts = [w["handle"] for w in settings["watch"]]
            teller = asyncio.create_task(narrate(app, narrator, accounts))
            try:
                await serve(app, until=lambda: source.exhausted, check_every=0.1)
                if not source.exhausted:  # serve() took the signal: the user wants out
                    return False
                await app.outbox.drain(timeout=10)
            finally:
                teller.cancel()
                with suppress(asyncio.CancelledError):
                    await teller
            narrator.tell()  # the replay is over: whatever is left, in order
    finally:
        server.close()
    return True


async def _reachable(url: str) -> str | None:
    import httpx

    from followerwatch.errors import StoreError

    async with httpx.AsyncClient(timeout=10) as client:
        try:
            await InfluxV1Store(client, url=url, database=DATABASE).create_database()
        except StoreError as exc:
            return str(exc)
    return None


async def _summary(url: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    import httpx

    async with httpx.AsyncClient(timeout=10) as client:
        store = InfluxV1Store(client, url=url, database=DATABASE)
        points = await store.query(
            "SELECT first(followers), max(followers), last(followers), count(followers),"
            " last(unusual), min(unusual) FROM followers GROUP BY account"
        )
        events = await store.query(
            "SELECT kind, value, threshold, score FROM followerwatch_events GROUP BY account"
        )
    return points, events


async def _unfollow_day(url: str, chart: Path | None) -> list[str]:
    """The campaign impact report of the replay's (illustrative) Unfollow Day, and its chart."""
    import httpx

    from followerwatch.analysis.campaign_config import CampaignConfig
    from followerwatch.analysis.campaigns import impact_report
    from followerwatch.analysis.impact import load_series

    campaign = CampaignConfig.model_validate(
        {
            "name": "unfollow-day",
            "accounts": ["x/aplusk"],
            "controls": ["x/cnnbrk"],
            "start": UNFOLLOW_START,
            "end": UNFOLLOW_END,
            "goal": {"below": 1_000_000},
            "baseline": "7d",
        }
    )
    async with httpx.AsyncClient(timeout=10) as client:
        store = InfluxV1Store(client, url=url, database=DATABASE)
        reports = await impact_report(store, campaign)
        series = await load_series(
            store,
            "x",
            "aplusk",
            campaign.start - timedelta(days=7),
            campaign.end + timedelta(days=1),
        )
    lines = [line for report in reports for line in report.lines()] or ["no report: no data"]
    if reports and chart is not None:
        from followerwatch.analysis.charts import impact_chart

        lines.append(f"chart: {impact_chart(chart, reports[0], series)}")
    return lines


def run_demo(
    console: Console,
    *,
    influx_url: str | None,
    spawn_dir: Path | None,
    seconds: float,
    keep_running: bool,
) -> int:
    """Run the demo end to end; returns the exit code (DemoError: one line and the code).

    With neither `influx_url` nor `spawn_dir`, a throwaway influxd runs in a temp folder.
    """
    binary = influxd_on_path() if influx_url is None else None
    with interruptible():
        stack = ExitStack()  # influxd and the temp folders
        try:
            return _run_demo(stack, console, influx_url, binary, spawn_dir, seconds, keep_running)
        except KeyboardInterrupt:
            raise DemoError("demo interrupted", INTERRUPTED) from None
        except (InfluxdError, StoreError, httpx.HTTPError, OSError) as exc:
            raise DemoError(f"demo failed: {exc}") from None
        finally:
            with signals_ignored():  # a second Ctrl-C must not leave influxd or a folder behind
                stack.close()


def _run_demo(
    stack: ExitStack,
    console: Console,
    influx_url: str | None,
    binary: str | None,
    spawn_dir: Path | None,
    seconds: float,
    keep_running: bool,
) -> int:
    console.rule("followerwatch demo: April 2009")
    console.print(
        "[bold]The replay numbers are illustrative, not historical records.[/] The shape "
        "follows the story: @aplusk beats @cnnbrk to 1,000,000 followers, then an "
        '"Unfollow Day" drags him back under.'
    )
    if binary is not None:
        influx_url = spawn(stack, console, binary, spawn_dir)
    assert influx_url is not None
    problem = asyncio.run(_reachable(influx_url))
    if problem is not None:
        raise DemoError(f"InfluxDB is not usable: {problem}")
    data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fw-demo-")))
    receiver = Receiver()
    webhook = f"http://127.0.0.1:{receiver.port}/alerts"
    settings = demo_settings(influx_url, data_dir, seconds, webhook)
    rows = read_replay(replay_file(), "x")
    narrator = Narrator(console, story(rows), receiver.received, falls(rows))
    console.rule("The replay (story and alerts, in replay time)")
    if not asyncio.run(_run(settings, receiver, narrator)):
        raise KeyboardInterrupt  # the service took the signal; unwind as Ctrl-C does
    points, events = asyncio.run(_summary(influx_url))
    _print_summary(console, points, events, receiver)
    console.rule("Unfollow Day: what did it cost?")
    chart = (spawn_dir.parent if spawn_dir is not None else Path.cwd()) / "unfollow-day.png"
    for line in asyncio.run(_unfollow_day(influx_url, chart)):
        console.print(line)
    if binary is None or keep_running:
        console.print(
            f"See it in Grafana: add an InfluxDB data source (query language InfluxQL) with URL "
            f"{influx_url} and database {DATABASE}, then set the time range to 2009-04-14 → "
            f"2009-04-29 and query: SELECT last(followers) FROM followers WHERE $timeFilter "
            f"GROUP BY time($__interval), account"
        )
    else:
        # The throwaway influxd stops with the demo: its URL would lead nowhere.
        console.print("To browse the data in Grafana, run the demo again with --keep-running.")
    if keep_running and binary is not None:
        with suppress(KeyboardInterrupt):  # the way to end it, so exit 0
            console.print("influxd stays up; press Ctrl-C to stop it.")
            while True:
                signal.pause()
    ok = len(events) > 0 and all(s["values"] for s in points) and receiver.received
    return 0 if ok else 1


def _print_summary(
    console: Console, points: list[dict[str, Any]], events: list[dict[str, Any]], receiver: Receiver
) -> None:
    table = Table(
        title="Summary (read back from InfluxDB)",
        caption="score: the unusual rule's score of the last count; lowest: of any count",
    )
    columns = ("account", "first", "peak", "last", "score", "lowest", "points", "alerts")
    for col in columns:
        table.add_column(col, justify="left" if col == "account" else "right")
    alerts: dict[str, int] = {}
    for series in events:
        alerts[series["tags"]["account"]] = len(series["values"])
    for series in points:
        _, first, peak, last, count, score, lowest = series["values"][0]
        account = series["tags"]["account"]
        table.add_row(
            at_handle(account),
            f"{first:,}",
            f"{peak:,}",
            f"{last:,}",
            format_score(score),
            format_score(lowest),
            f"{count:,}",
            str(alerts.get(account, 0)),
        )
    console.print(table)
    for series in events:
        for _, kind, value, threshold, score in series["values"]:
            who = at_handle(series["tags"]["account"])
            if score is None:
                console.print(f"  event  {who}  {kind}  {threshold:,}  (at {value:,})")
            else:  # the unusual rule's value and threshold are rates: observed and typical
                console.print(
                    f"  event  {who}  {kind}  {value:+,}/h  (typical {threshold:+,}/h, "
                    f"score {format_score(score)})"
                )
    console.print(
        f"Webhook receiver got {len(receiver.received)} alert(s): "
        + ", ".join(f"{p['event']['account']} {p['event']['kind']}" for p in receiver.received)
    )
