"""Composition root: builds the one httpx client, store, state, sources, collectors and pipeline."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType

import httpx
import structlog

from followerwatch.alerts.enrich import ProjectionEnricher
from followerwatch.alerts.outbox import Outbox
from followerwatch.alerts.routing import make_router
from followerwatch.alerts.sink import EventSink
from followerwatch.analysis.campaigns import CampaignRunner
from followerwatch.analysis.charts import AccountCharts
from followerwatch.clock import Clock, SystemClock
from followerwatch.config.settings import Config, InfluxConfig
from followerwatch.disk.full import MemoryBuffer
from followerwatch.errors import StoreError
from followerwatch.models import ByConfig
from followerwatch.net.http import build_client
from followerwatch.net.ratelimit import BudgetShare
from followerwatch.notify import build_notifier
from followerwatch.poll.account_failures import AccountFailures
from followerwatch.poll.batch import Row
from followerwatch.poll.collector import Collector
from followerwatch.poll.pipeline import Pipeline
from followerwatch.poll.stats import PollStats
from followerwatch.rules import build_rule_sets
from followerwatch.service.groups import Group, plan_groups
from followerwatch.service.replicas import Replica, ShardIndex, open_shared, shared_spool
from followerwatch.sources import REGISTRY
from followerwatch.sources.base import Source, SourceContext
from followerwatch.sources.replay import ReplaySource
from followerwatch.state.base import StateBackend
from followerwatch.state.db import StateDB
from followerwatch.store.base import Store
from followerwatch.store.influx_v1 import InfluxV1Store
from followerwatch.store.spool import Spool
from followerwatch.store.spool_base import SpoolStore
from followerwatch.store.thresholds import ThresholdLines, threshold_lines
from followerwatch.store.writer import Writer

log = structlog.get_logger("followerwatch.app")


def build_store(cfg: InfluxConfig, client: httpx.AsyncClient) -> Store:
    """The configured InfluxDB transport."""
    token = cfg.token.get_secret_value() if cfg.token else None
    if cfg.transport == "v2":
        # influxdb-client takes a fifth of a second to import; only the v2 transport needs it.
        from followerwatch.store.influx_v2 import InfluxV2Store

        return InfluxV2Store(
            url=cfg.url,
            org=cfg.org or "",
            bucket=cfg.bucket or cfg.database,
            token=token or "",
            precision=cfg.precision,
            timeout_s=cfg.timeout,
        )
    return InfluxV1Store(
        client,
        url=cfg.url,
        database=cfg.database,
        username=cfg.username,
        password=cfg.password.get_secret_value() if cfg.password else None,
        token=token,
        precision=cfg.precision,
        retention_policy=cfg.retention_policy,
    )


async def ensure_database(cfg: InfluxConfig, store: Store) -> None:
    """Create the database when `create_database` is on (1.x API only); StoreError if it fails."""
    if cfg.create_database and isinstance(store, InfluxV1Store):
        await store.create_database()


def build_reader(cfg: InfluxConfig, client: httpx.AsyncClient) -> InfluxV1Store:
    """An InfluxQL reader: 1.x credentials, or on 2.x the token and the bucket's DBRP mapping."""
    return InfluxV1Store(
        client,
        url=cfg.url,
        database=cfg.bucket or cfg.database,
        username=cfg.username,
        password=cfg.password.get_secret_value() if cfg.password else None,
        token=cfg.token.get_secret_value() if cfg.token else None,
        precision=cfg.precision,
    )


def repeats(config: Config) -> Mapping[tuple[str, str], float]:
    """Each account's `repeat` interval, for those that have one (a view of the config)."""
    return ByConfig(config.rules, {id(r): r.repeat for r in config.rules.values() if r.repeat})


ACCOUNT_METRICS_AUTO = 100_000
"""The most watched accounts for which `account_metrics = "auto"` serves per-account series."""


def account_metrics(config: Config) -> bool:
    """Whether /metrics serves per-account series (never when there is no /metrics)."""
    service = config.settings.service
    if not service.ops_address or service.account_metrics == "off":
        return False
    return service.account_metrics == "on" or len(config.accounts) <= ACCOUNT_METRICS_AUTO


def zero_windows(config: Config) -> dict[str, float]:
    """Each platform's `zero_confirm`: how long a fall to 0 must last to be believed."""
    return {key: config.settings.platform(key).zero_confirm for key in REGISTRY}


class App:
    """Everything a running followerwatch holds; an async context manager."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Clock | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        dry_run: bool = False,
        store: Store | None = None,
        reset_state: bool = False,
    ) -> None:
        self.config = config
        self.clock = clock or SystemClock()
        # Replicas on one credential leave the others their share of its budget (the lease
        # loop sets how many peers there are; one process alone has none).
        self.budget_share = BudgetShare(per_peer=config.settings.service.poll_concurrency)
        settings = config.settings
        data = settings.service.data_dir
        # First, so a damaged or read-only file stops start-up before anything else is opened.
        reset_at = self.clock.now() if reset_state else None
        # The PostgreSQL backend: state shared by replicas, work leased by virtual shard.
        self.replica: Replica | None = None
        self.shards = ShardIndex(settings.state.shards)
        self.state: StateBackend
        if settings.state.backend == "postgresql":
            self.state, self.replica = open_shared(config, self.shards, self.budget_share)
        else:
            self.state = StateDB(data / "state.sqlite3", reset_at=reset_at)
        try:
            self.spool: SpoolStore = (
                Spool(data / "spool.sqlite3", settings.service.spool_cap, reset_at=reset_at)
                if self.replica is None
                else shared_spool(self.replica, settings.service.spool_cap)
            )
        except BaseException:
            self.state.close()
            raise
        self.client = build_client(transport)
        self.store = store or build_store(settings.influxdb, self.client)
        # InfluxQL reads (campaign reports, alert charts) go over /query even when writes use v2.
        self.reader = (
            self.store
            if isinstance(self.store, InfluxV1Store)
            else build_reader(settings.influxdb, self.client)
        )
        # The watchlist's lines: the pipeline replaces them on a reload, and alert charts and
        # projections read them at each alert, so a reloaded watchlist's are the ones used.
        self.thresholds = ThresholdLines(threshold_lines(config))
        charts = AccountCharts(self.reader, self.thresholds.of)
        self.notifiers = [
            build_notifier(n, self.client, self.clock, charts) for n in settings.notifiers
        ]
        rules = build_rule_sets(config.rules)
        alerts = settings.alerts
        self.outbox = Outbox(
            self.state,
            self.notifiers,
            self.clock,
            backoff_initial=alerts.backoff_initial,
            backoff_max=alerts.backoff_max,
            attempt_timeout=alerts.attempt_timeout,
            # Alert messages say where each account's trend leads next: one InfluxQL read per
            # outbox pass, with the lines read at each pass.
            enricher=ProjectionEnricher(
                self.reader, self.thresholds.current, local=self.state.accounts.history
            ),
        )
        route = make_router(alerts, [n.name for n in self.notifiers])
        # One bound for what the pipeline and the writer hold in memory while the disk is full.
        self.buffer = MemoryBuffer(settings.service.memory_buffer)
        self.lost_readings = 0  # held in memory and lost at exit (the disk stayed full)
        # What stored polls said, read by /metrics; each account's count only if served.
        self.poll_stats = PollStats(per_account=account_metrics(config))
        self.writer = Writer(
            self.store,
            self.state,
            self.spool,
            self.clock,
            raise_event=EventSink(self.state.events, route).raise_event,
            buffer=self.buffer,
        )
        self.pipeline = Pipeline(
            state=self.state,
            writer=self.writer,
            outbox=self.outbox,
            rules=rules,
            clock=self.clock,
            route=route,
            repeat=repeats(config),
            dry_run=dry_run,
            zero_confirm=zero_windows(config),
            thresholds=self.thresholds,
            buffer=self.buffer,
            stats=self.poll_stats,
        )
        self.campaigns = CampaignRunner(
            settings.campaigns, self.state, self.reader, self.clock, route, self._owns
        )
        self.groups = self.plan(config)
        self._gates: dict[str, asyncio.Semaphore] = {}
        self.sources: dict[str, Source] = {}
        self.collectors: dict[str, Collector] = {}
        # Which accounts fail and how (logged once per change, in /metrics), across reloads.
        self.account_failures = AccountFailures()
        for platform in self._platforms(config, self.groups):
            self._add_collector(platform)

    def _owns(self, key: tuple[str, str]) -> bool:
        """Whether this process keeps the state of a key (a replica: holds its shard)."""
        return self.replica is None or self.shards.shard_of(key) in self.replica.loaded

    def plan(self, config: Config) -> list[Group]:
        """This process's groups: its shard's, or (PostgreSQL) those of the shards it leases."""
        if self.replica is None:
            return plan_groups(config)
        self.shards.use(config)
        return plan_groups(config, self.replica.held())

    def _platforms(self, config: Config, groups: Sequence[Group]) -> set[str]:
        # A replica's shards change while it runs: every watched platform gets its collector.
        if self.replica is not None:
            return set(config.by_platform())
        return {g.platform for g in groups}

    def replan(self) -> list[Group]:
        """The groups after this replica's shards changed (what the scheduler now polls)."""
        self.groups = self.plan(self.config)
        return self.groups

    def _add_collector(self, platform: str) -> None:
        source = self._build_source(platform)
        self.sources[platform] = source
        self.collectors[platform] = Collector(
            platform, source, self.pipeline, self.clock, self.account_failures
        )

    def _build_source(self, platform: str) -> Source:
        pcfg = self.config.settings.platform(platform)
        state_dir = self.config.settings.service.data_dir / "sources" / platform
        state_dir.mkdir(parents=True, exist_ok=True)
        if pcfg.replay is not None:
            return ReplaySource(
                pcfg.replay.file,
                platform,
                self.clock,
                pcfg.replay.speed,
                position_file=state_dir / "replay-position.json",
                save_position=not self.pipeline.dry_run,
            )
        context = SourceContext(self.client, self.clock, state_dir, self.budget_share)
        return REGISTRY[platform].build(pcfg, context)

    async def prepare(self) -> None:
        """Create the database when asked to (1.x only); a failure is logged, not raised."""
        try:
            await ensure_database(self.config.settings.influxdb, self.store)
        except StoreError as exc:
            # The writes that follow fail the same way and are spooled (and reported).
            log.warning("could not create the database", error=str(exc))

    async def poll_group(self, group: Group) -> list[Row]:
        """Poll one batch group as soon as its platform has a free slot."""
        gate = self._gates.get(group.platform)
        if gate is None:
            gate = self._gates[group.platform] = asyncio.Semaphore(
                self.config.settings.service.poll_concurrency
            )
        async with gate:
            return await self.collectors[group.platform].poll(group.accounts, group.name)

    async def poll_once(self) -> list[Row]:
        """One poll of every group, `poll_concurrency` per platform, then one delivery pass.

        The pass (what this poll raised, and what earlier runs left pending) is bounded by
        `alerts.poll_delivery_timeout`; what it cannot send stays in the outbox for the next run.
        """
        results = await asyncio.gather(*(self.poll_group(g) for g in self.groups))
        if not self.pipeline.dry_run:
            await self.outbox.deliver_within(self.config.settings.alerts.poll_delivery_timeout)
        return [row for rows in results for row in rows]

    def apply_config(self, config: Config) -> list[Group]:
        """Take a new watchlist, rules and platform settings without a restart; the new groups.

        Rule state lives in SQLite under each rule's name, so a rule that is still configured
        keeps its state; a source whose platform settings did not change is kept as it is.
        """
        old = self.config
        self.config = config
        pipeline = self.pipeline
        rules = build_rule_sets(config.rules)
        pipeline.configure(
            rules,
            repeats(config),
            threshold_lines(config),
            zero_windows(config),
        )
        self.poll_stats.keep_per_account(account_metrics(config))
        groups = self.plan(config)
        needed = self._platforms(config, groups)
        for platform in needed:
            settings = config.settings.platform(platform)
            if platform in self.sources and old.settings.platform(platform) == settings:
                continue
            self._add_collector(platform)
        for platform in set(self.sources) - needed:
            del self.sources[platform], self.collectors[platform]
        watched = (
            {a.key for a in config.accounts}
            if self.replica is not None
            else {a.key for g in groups for a in g.accounts}
        )
        self.account_failures.forget(watched)
        pipeline.forget(watched)
        self.groups = groups
        fixed = [
            key
            for key in ("service", "influxdb", "notifiers", "alerts")
            if getattr(old.settings, key) != getattr(config.settings, key)
        ]
        if fixed:
            log.warning("changed settings take effect only after a restart", sections=fixed)
        return groups

    def start_reload(
        self, reschedule: Callable[[Sequence[Group]], None], stop: asyncio.Event
    ) -> None:
        """Watch the config file(s) and apply every change until `stop` (no file: nothing)."""
        if self.config.path is None:
            return
        from followerwatch.service.reload import ConfigWatcher

        watcher = ConfigWatcher(self.config, Reconfigure(self, reschedule))
        self.reload_task = asyncio.create_task(watcher.run(stop))

    async def __aenter__(self) -> App:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # What the full disk kept in memory gets a last chance, oldest (rule work) first.
        self.lost_readings = await self.pipeline.waiting.close()
        self.lost_readings += await self.writer.settle()
        await self.store.close()
        await self.client.aclose()
        self.state.close()
        self.spool.close()


@dataclass(frozen=True)
class Reconfigure:
    """Applies a reloaded config to the app and hands the scheduler the groups it now plans."""

    app: App
    reschedule: Callable[[Sequence[Group]], None]

    def __call__(self, config: Config) -> None:
        self.reschedule(self.app.apply_config(config))
