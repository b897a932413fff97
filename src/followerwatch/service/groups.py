"""The polling plan's batches: each platform's accounts (this shard's) cut into groups."""

from __future__ import annotations

import math
from dataclasses import dataclass

from followerwatch.config.settings import Config
from followerwatch.models import Account
from followerwatch.poll.shard import resolve as resolve_shard
from followerwatch.poll.shard import select as select_shard
from followerwatch.sources import REGISTRY


@dataclass(frozen=True)
class Group:
    """A batch of one platform's accounts, polled by one scheduler job."""

    platform: str
    name: str
    accounts: tuple[Account, ...]
    interval: float
    jitter: float

    @property
    def job_id(self) -> str:
        """The scheduler job id."""
        return f"{self.platform}:{self.name}"


def plan_groups(config: Config) -> list[Group]:
    """Split each platform's accounts (this shard's, when sharded) into batches."""
    groups = []
    shard = resolve_shard(config.settings.service.shard)
    by_platform = config.by_platform()
    for key, spec in REGISTRY.items():
        # Sharding comes before batching, so every shard packs full batches of its own.
        accounts = select_shard(by_platform.get(key, ()), shard)
        if not accounts:
            continue
        pcfg = config.settings.platform(key)
        size = min(pcfg.batch_size or spec.batch_max, spec.batch_max)
        by_key: dict[str, list[Account]] = {}
        group_key = spec.group_key if pcfg.replay is None else None
        if group_key is None:
            by_key[""] = accounts  # one part: no call per account
        else:
            for account in accounts:
                by_key.setdefault(group_key(account), []).append(account)
        if pcfg.replay is not None:
            size = len(accounts)
        for part, members in by_key.items():
            for i in range(math.ceil(len(members) / size)):
                name = f"{part}:{i}" if part else str(i)
                groups.append(
                    Group(
                        key,
                        name,
                        tuple(members[i * size : (i + 1) * size]),
                        pcfg.interval,
                        pcfg.jitter,
                    )
                )
    return groups
