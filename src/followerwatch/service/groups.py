"""The polling plan's batches: each platform's accounts (this shard's) cut into groups."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
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


def plan_groups(config: Config, held: Mapping[int, Sequence[Account]] | None = None) -> list[Group]:
    """Split each platform's accounts (this shard's, when sharded) into batches.

    With `held` (the PostgreSQL backend: the virtual shards this replica leases, and their
    accounts), each virtual shard is batched on its own, its groups named `...@SHARD`: a shard
    that changes hands takes its groups along, and the others keep their beat.
    """
    if held is None:
        shard = resolve_shard(config.settings.service.shard)
        # Sharding comes before batching, so every shard packs full batches of its own.
        every = config.by_platform()
        return _cut(config, {k: select_shard(v, shard) for k, v in every.items()}, "")
    groups = []
    for vshard in sorted(held):
        by_platform: dict[str, list[Account]] = {}
        for account in held[vshard]:
            by_platform.setdefault(account.platform, []).append(account)
        groups.extend(_cut(config, by_platform, f"@{vshard}"))
    return groups


def _cut(config: Config, by_platform: Mapping[str, list[Account]], suffix: str) -> list[Group]:
    groups = []
    for key, spec in REGISTRY.items():
        accounts = by_platform.get(key)
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
                name = (f"{part}:{i}" if part else str(i)) + suffix
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
