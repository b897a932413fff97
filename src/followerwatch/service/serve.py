"""The long-running service: scheduler + signals + orderly shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable

import structlog

from followerwatch.service.app import App
from followerwatch.service.baseline import Seeded, Seeder, seed_at_start, seedable_rules
from followerwatch.service.heap import settled_heap
from followerwatch.service.ops import start_ops
from followerwatch.service.scheduler import PollScheduler

log = structlog.get_logger("followerwatch.service")


class Running:
    """Whether polling runs: until the service is told to stop (what /healthz reports)."""

    def __init__(self, stop: asyncio.Event) -> None:
        self._stop = stop

    def __call__(self) -> bool:
        return not self._stop.is_set()


async def seed_baselines(app: App) -> Seeded | None:
    """The unusual rule's baselines this shard's accounts lack, learned from InfluxDB."""
    if app.pipeline.dry_run:
        return None
    await asyncio.sleep(0)  # the first polls are under way before any of this work
    rules = seedable_rules(app.pipeline.rules)
    if not rules:
        return None  # no account has the rule: not even a pass over the watchlist
    keys = [a.key for g in app.groups for a in g.accounts if a.key in rules]
    if not keys:
        return None
    return await seed_at_start(Seeder(app.state, app.reader, rules, app.clock), keys)


class Leasing:
    """The replica's lease loop while the service runs, and its orderly end."""

    def __init__(self, app: App, scheduler: PollScheduler) -> None:
        """Tick `app.replica`'s leases; hand `scheduler` the groups of the shards held."""
        assert app.replica is not None
        self.replica = app.replica
        self._stop = asyncio.Event()

        def replan() -> None:
            scheduler.replace(app.replan())

        self.task = asyncio.create_task(self.replica.run(self._stop, replan))

    async def stop(self, timeout: float) -> bool:
        """Stop ticking, write the queued state under the leases, then release them."""
        self._stop.set()
        await asyncio.gather(self.task, return_exceptions=True)
        state = self.replica.state
        written = await asyncio.to_thread(state.flush, timeout)
        if not written:
            log.warning("state left unwritten at shutdown", pending=state.committer.pending)
        await self.replica.release()
        return written


def start_leasing(app: App, scheduler: PollScheduler) -> Leasing | None:
    """The lease loop, for a replica of the PostgreSQL backend (None for SQLite)."""
    return Leasing(app, scheduler) if app.replica is not None else None


async def serve(
    app: App, *, until: Callable[[], bool] | None = None, check_every: float = 0.2
) -> bool:
    """Poll on schedule until SIGINT/SIGTERM (or `until()` is true); True if shutdown was clean."""
    await app.prepare()
    with settled_heap():
        return await _serve(app, until, check_every)


async def _serve(app: App, until: Callable[[], bool] | None, check_every: float) -> bool:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        loop.add_signal_handler(sig, stop.set)
    scheduler = PollScheduler(app.groups, app.poll_group, app.clock.now)
    outbox_stop = asyncio.Event()
    # Deliveries left pending by a previous run (or a crash) resume at once.
    outbox = asyncio.create_task(app.outbox.run(outbox_stop))
    # A spooled backlog drains between polls too, oldest first.
    flusher = asyncio.create_task(app.writer.run(outbox_stop))
    campaigns = asyncio.create_task(app.campaigns.run(outbox_stop, app.outbox.kick))
    scheduler.start()
    # The PostgreSQL backend: the shards polled follow this replica's leases.
    leasing = start_leasing(app, scheduler)
    # Behind the first polls, never before them: until it is done the rule learns from polls.
    baseline = asyncio.create_task(seed_baselines(app))
    app.start_reload(scheduler.replace, outbox_stop)  # config edits apply without a restart
    # /healthz, /readyz and /metrics, while the loop below runs.
    ops = await start_ops(app, Running(stop))
    log.info(
        "followerwatch started",
        groups=len(app.groups),
        accounts=sum(len(g.accounts) for g in app.groups),
    )
    try:
        while not stop.is_set():
            if until is not None and until() and not scheduler.busy:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=check_every)
    finally:
        for sig, handler in previous.items():
            loop.remove_signal_handler(sig)
            # The caller's handler, not SIG_DFL: the demo stops its influxd on SIGTERM.
            if handler is not None:
                signal.signal(sig, handler)
    baseline.cancel()  # what it has written stays; the next start picks up the rest
    await asyncio.gather(baseline, return_exceptions=True)
    clean = await scheduler.stop(app.config.settings.service.shutdown_timeout)
    if leasing is not None:
        # The polls' state is written under the leases before they are given up.
        clean = await leasing.stop(app.config.settings.service.shutdown_timeout) and clean
    outbox_stop.set()
    try:
        await asyncio.wait_for(
            asyncio.gather(outbox, flusher, campaigns),
            timeout=app.config.settings.service.shutdown_timeout,
        )
    except TimeoutError:
        clean = False
    counts = app.writer.counts()
    log.info(
        "followerwatch stopped",
        clean=clean,
        spooled=counts.spooled,
        added=counts.added,
        written=counts.written,
        dropped=counts.dropped,
        dead_lettered=counts.dead_lettered,
    )
    if ops is not None:
        await ops.stop()
    return clean
