"""`check` with the PostgreSQL backend: the database, the replicas and the shards each holds."""

from __future__ import annotations

import psycopg
from rich.console import Console
from rich.table import Table
from rich.text import Text

from followerwatch.config.settings import Config
from followerwatch.state.pg.connect import connect, schema_version
from followerwatch.state.pg.leases import ReplicaRow, list_replicas


def check_replicas(cfg: Config, out: Console) -> bool:
    """Print whether PostgreSQL answers and which replicas hold which shards; False if it fails."""
    state = cfg.settings.state
    if state.dsn is None:
        return True
    try:
        with connect(state.dsn.get_secret_value()) as conn:
            version = schema_version(conn)
            rows = list_replicas(conn) if version else []
    except psycopg.Error as exc:
        problem = " ".join(str(exc).split())
        for secret in state.secrets():
            problem = problem.replace(secret, "***")
        out.print(Text.assemble(("✗", "red"), f" PostgreSQL state: {problem}"))
        return False
    out.print(
        f"[green]✓[/] PostgreSQL state reachable (schema version {version}; "
        f"{state.shards} virtual shards)"
    )
    live = [r for r in rows if r.live]
    if not live:
        out.print("  no replica is running: nothing is polled until one starts")
        return True
    out.print(replica_table(rows, state.shards))
    return True


def replica_table(rows: list[ReplicaRow], shards: int) -> Table:
    """One row per replica the database knows: live or not, its shards, when last seen."""
    table = Table(title="Replicas", title_justify="left")
    for column in ("replica", "live", "shards", "last seen (UTC)"):
        table.add_column(column)
    held = 0
    for row in rows:
        held += len(row.shards)
        table.add_row(
            row.name,
            "yes" if row.live else "no (expired)",
            _ranges(row.shards),
            f"{row.seen:%Y-%m-%d %H:%M:%S}",
        )
    table.caption = f"{held} of {shards} shards leased"
    return table


def _ranges(shards: tuple[int, ...]) -> str:
    """`0-5, 9, 12-13` (and the count)."""
    if not shards:
        return "none"
    parts: list[str] = []
    start = prev = shards[0]
    for shard in [*shards[1:], None]:
        if shard is not None and shard == prev + 1:
            prev = shard
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if shard is not None:
            start = prev = shard
    return f"{len(shards)}: " + ", ".join(parts)
