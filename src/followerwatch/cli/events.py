"""`followerwatch events` and `followerwatch test-alert`: what was sent, and can it be sent."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from followerwatch.cli.options import ConfigOpt, state_file_errors


def events(
    config: ConfigOpt = None,
    limit: Annotated[
        int, typer.Option(min=1, max=100_000, help="How many of the newest events.")
    ] = 20,
) -> None:
    """List recent events with their delivery status per notifier."""
    from followerwatch.cli.common import load_or_exit, out
    from followerwatch.state.db import StateDB

    cfg = load_or_exit(config)
    with state_file_errors():
        state = StateDB(cfg.settings.service.data_dir / "state.sqlite3")
    try:
        rows = state.events.recent(limit)
    finally:
        state.close()
    table = Table(title=f"Last {len(rows)} events")
    for col in ("time", "platform", "account", "kind", "severity", "message", "deliveries"):
        table.add_column(col)
    for event, deliveries in rows:
        table.add_row(
            event.time.strftime("%Y-%m-%d %H:%M:%S"),
            event.platform,
            event.account,
            str(event.kind),
            str(event.severity),
            escape(event.message),
            ", ".join(f"{n}: {st}" for n, st in sorted(deliveries.items())) or "-",
        )
    out.print(table)


def test_alert(config: ConfigOpt = None) -> None:
    """Send a test event through every configured notifier and report each result."""
    from followerwatch.alerts.alerting import send_test_alert
    from followerwatch.cli.common import load_or_exit, out

    cfg = load_or_exit(config)
    results = asyncio.run(send_test_alert(cfg))
    for name, problem in results.items():
        out.print(
            f"[green]✓[/] {escape(name)}"
            if problem is None
            else f"[red]✗[/] {escape(f'{name}: {problem}')}"
        )
    raise typer.Exit(0 if all(p is None for p in results.values()) else 1)
