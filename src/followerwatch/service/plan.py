"""The polling plan `check` prints: requests per cycle against each platform's ceiling."""

from __future__ import annotations

from dataclasses import dataclass

from followerwatch.config.settings import Config
from followerwatch.poll.shard import virtual_shards
from followerwatch.service.groups import plan_groups
from followerwatch.sources import REGISTRY

X_USD_PER_USER_READ = 0.010


@dataclass(frozen=True)
class PlanRow:
    """One platform (or one instance of it) and what polling it costs."""

    platform: str
    scope: str
    accounts: int
    requests_per_cycle: int
    interval: float
    ceiling: tuple[int, float] | None
    replay: bool

    @property
    def min_interval(self) -> float | None:
        """The shortest interval the ceiling sustains, or None when there is no ceiling."""
        if self.ceiling is None or self.replay:
            return None
        limit, window = self.ceiling
        return self.requests_per_cycle * window / limit

    @property
    def share(self) -> float | None:
        """The fraction of the ceiling the configured interval uses."""
        shortest = self.min_interval
        if shortest is None:
            return None
        return shortest / self.interval if self.interval > 0 else float("inf")

    @property
    def usd_per_day(self) -> float | None:
        """X pay-per-use cost: each user read is billed once per UTC day, whatever the interval."""
        if self.platform != "x" or self.replay:
            return None
        return self.accounts * X_USD_PER_USER_READ


def build_plan(config: Config) -> list[PlanRow]:
    """One row per platform and rate-limit scope (e.g. per Mastodon instance)."""
    rows: list[PlanRow] = []
    # With PostgreSQL, replicas batch each virtual shard on its own: every shard's groups,
    # whoever holds it, are what the platform sees per cycle.
    state = config.settings.state
    held = virtual_shards(config.accounts, state.shards) if state.backend == "postgresql" else None
    groups = plan_groups(config, held)
    for key, spec in REGISTRY.items():
        pcfg = config.settings.platform(key)
        scopes: dict[str, list[int]] = {}
        for group in (g for g in groups if g.platform == key):
            scope = group.name.rsplit(":", 1)[0] if ":" in group.name else ""
            accounts, requests = scopes.setdefault(scope, [0, 0])
            size = len(group.accounts)
            cost = spec.requests_per_batch(pcfg, size) if spec.requests_per_batch else 1
            scopes[scope] = [accounts + len(group.accounts), requests + cost]
        for scope, (accounts, requests) in scopes.items():
            rows.append(
                PlanRow(
                    key,
                    scope,
                    accounts,
                    0 if pcfg.replay else requests,
                    pcfg.interval,
                    spec.ceiling_for(pcfg) if spec.ceiling_for else spec.rate_limit_ceiling,
                    pcfg.replay is not None,
                )
            )
    return rows
