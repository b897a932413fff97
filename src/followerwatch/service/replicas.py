"""One replica among many (the PostgreSQL backend): lease virtual shards, poll only those.

Every third of the lease TTL the replica renews, rebalances and claims (state/pg/leases.py).
A shard it gains is loaded from PostgreSQL before its groups are scheduled; a shard it loses
is unscheduled at once and forgotten. On SIGTERM it gives every lease up, so the others take
them at their next tick instead of after the TTL.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import Callable, Mapping, Sequence

import psycopg
import structlog

from followerwatch.config.settings import Config
from followerwatch.errors import ConfigError, StateUnavailable
from followerwatch.models import Account
from followerwatch.net.ratelimit import BudgetShare
from followerwatch.poll.shard import owner, virtual_shards
from followerwatch.state.pg.connect import connect
from followerwatch.state.pg.db import PgStateDB
from followerwatch.state.pg.leases import Held, LeaseTable, renew_every
from followerwatch.store.pg_spool import PgSpool

log = structlog.get_logger("followerwatch.replicas")


class Replica:
    """Keeps this process's leases and tells the scheduler which shards to poll."""

    def __init__(
        self,
        leases: LeaseTable,
        state: PgStateDB,
        accounts_of: Callable[[], Mapping[int, Sequence[Account]]],
        share: BudgetShare | None = None,
    ) -> None:
        """`accounts_of()`: the watchlist's accounts by virtual shard (re-read on every change);
        `share`: the rate-limit budget split with the other live replicas."""
        self.share = share
        self.leases = leases
        self.state = state
        self._accounts_of = accounts_of
        self.loaded: dict[int, int] = {}  # shard -> fence, loaded and scheduled
        self.ticks = 0
        self.load_failures = 0
        self._down = False

    @property
    def every(self) -> float:
        """Seconds between ticks: a third of the lease TTL."""
        return renew_every(self.leases.ttl)

    def held(self) -> Mapping[int, Sequence[Account]]:
        """The accounts of every shard this replica polls now."""
        accounts = self._accounts_of()
        return {shard: accounts.get(shard, ()) for shard in sorted(self.loaded)}

    async def tick(self) -> bool:
        """One renewal; whether the shards polled changed."""
        held = await asyncio.to_thread(self.leases.tick)
        self.ticks += 1
        self._log_health(held)
        return await self._follow(held)

    def _log_health(self, held: Held) -> None:
        # Logged once when the database goes away and once when it is back (not every tick).
        if not held.ok and not self._down:
            self._down = True
            log.warning("cannot renew leases", error=held.error, held=len(held.leases))
        elif held.ok and self._down:
            self._down = False
            log.info("leases renewed again", held=len(held.leases), live=held.live)

    async def _follow(self, held: Held) -> bool:
        if held.ok and self.share is not None:
            self.share.peers = max(held.live - 1, 0)
        if not held.ok:
            # PostgreSQL is unreachable, so nobody can take a lease either: keep polling what
            # this replica holds; its state waits in memory and is written, fenced, on return.
            return False
        fences = held.fences
        # Re-claimed after its lease lapsed (a database outage) with nobody between: the state
        # in memory and the work queued for it are still the newest, under the new fence.
        for gain in held.gained:
            if gain.continued and gain.shard in self.loaded:
                self.state.refence(gain.shard, gain.fence)
                self.loaded[gain.shard] = gain.fence
        # Losses first: a shard whose lease is gone (or whose fence moved on) stops being polled.
        changed = False
        for shard in [s for s, f in self.loaded.items() if fences.get(s) != f]:
            del self.loaded[shard]
            self.state.drop_shard(shard)
            changed = True
        new = sorted(s for s in fences if s not in self.loaded)
        if new:
            try:
                await asyncio.to_thread(self.state.load_shards, new)
            except Exception as exc:  # a database error: all are tried again at the next tick
                self.load_failures += 1
                log.warning("cannot load the state of shards", shards=new, error=str(exc))
            else:
                self.loaded.update((s, fences[s]) for s in new)
                changed = True
        self.state.set_fences(self.loaded)
        if changed:
            gained = [g.shard for g in held.gained]
            log.info(
                "shards changed",
                held=len(self.loaded),
                live=held.live,
                gained=gained,
                lost=sorted(held.lost | held.released),
            )
        return changed

    async def run(self, stop: asyncio.Event, replan: Callable[[], None]) -> None:
        """Tick until `stop`, calling `replan()` whenever the shards polled change.

        The leases are not released here: the service first finishes its polls and writes
        their state under the leases, then calls release().
        """
        while not stop.is_set():
            if await self.tick():
                replan()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self.every)

    async def release(self) -> None:
        """Give every lease up (shutdown): the other replicas take the shards at their next tick."""
        for shard in list(self.loaded):
            self.state.drop_shard(shard)
        self.loaded.clear()
        self.state.set_fences({})
        try:
            released = await asyncio.to_thread(self.leases.release_all)
        except Exception as exc:  # the leases expire after the TTL anyway
            log.warning("cannot release leases", error=str(exc))
            return
        log.info("leases released", shards=released)


def replica_name() -> str:
    """This process's name among the replicas: its host (a pod's name) and its pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


def shortest_interval(config: Config) -> float:
    """The shortest poll interval of a platform with watched accounts (the lease TTL follows it)."""
    intervals = [config.settings.platform(p).interval for p in config.by_platform()]
    return min(intervals, default=60.0)


class ShardIndex:
    """The watchlist by virtual shard, and each account's shard: worked out once per config."""

    def __init__(self, count: int) -> None:
        """`count` virtual shards."""
        self.count = count
        self._config: Config | None = None
        self._by_shard: dict[int, list[Account]] = {}
        self._of: dict[tuple[str, str], int] = {}

    def use(self, config: Config) -> None:
        """Index a (new) config's accounts."""
        if config is self._config:
            return
        self._config = config
        self._by_shard = virtual_shards(config.accounts, self.count)
        self._of = {a.key: s for s, members in self._by_shard.items() for a in members}

    def by_shard(self) -> Mapping[int, Sequence[Account]]:
        """The accounts of each virtual shard."""
        return self._by_shard

    def shard_of(self, key: tuple[str, str]) -> int:
        """The virtual shard of an account key (one not watched: hashed on the spot)."""
        shard = self._of.get(key)
        return owner(f"{key[0]}\x00{key[1]}", self.count) if shard is None else shard


def open_shared(config: Config, index: ShardIndex, share: BudgetShare) -> tuple[PgStateDB, Replica]:
    """The PostgreSQL state and this process's replica, for `[state] backend = "postgresql"`."""
    cfg = config.settings.state
    if cfg.dsn is None:  # the config model refuses this; here for the type checker
        raise ConfigError('state.dsn: required with backend = "postgresql"')
    dsn = cfg.dsn.get_secret_value()
    index.use(config)
    ttl = cfg.lease_ttl_for(shortest_interval(config))
    name = replica_name()
    replica_id = f"{name}:{uuid.uuid4().hex[:8]}"
    try:
        state = PgStateDB(
            dsn,
            replica_id,
            shard_of=index.shard_of,
            max_pending=cfg.max_pending,
            # A lane's claim must outlast a delivery pass, or a live replica's lane moves.
            claim_ttl=max(ttl, 2 * config.settings.alerts.attempt_timeout),
        )
    except psycopg.Error as exc:
        problem = " ".join(str(exc).split())
        for secret in cfg.secrets():
            problem = problem.replace(secret, "***")
        raise StateUnavailable(f"state.dsn: cannot open the PostgreSQL state: {problem}") from None
    leases = LeaseTable(dsn, replica_id, name, shards=cfg.shards, ttl=ttl)
    return state, Replica(leases, state, index.by_shard, share)


def shared_spool(replica: Replica, cap: int) -> PgSpool:
    """The spool every replica shares (points InfluxDB has not taken yet), in PostgreSQL."""
    state = replica.state
    return PgSpool(
        lambda: connect(state.dsn, autocommit=True),
        cap,
        replica=state.replica,
        claim_ttl=max(replica.leases.ttl, 30.0),
    )
