"""APScheduler wiring: one job per batch group; no overlap, coalesced, no silent misfire skips."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.schedulers.base import STATE_RUNNING
from apscheduler.triggers.interval import IntervalTrigger

from followerwatch.service.groups import Group

log = structlog.get_logger("followerwatch.scheduler")


class PollScheduler:
    """Runs `poll(group)` for every group at its interval and tracks what is in flight."""

    def __init__(
        self,
        groups: Sequence[Group],
        poll: Callable[[Group], Awaitable[object]],
        now: Callable[[], datetime],
    ) -> None:
        self._groups = list(groups)
        self._poll = poll
        self._now = now
        self._inflight: set[asyncio.Task[object]] = set()
        self._scheduler = AsyncIOScheduler()

    def start(self) -> None:
        """Schedule every group; the first poll of each starts at once."""
        for group in self._groups:
            self._add(group)
        self._scheduler.start()

    def _add(self, group: Group) -> None:
        self._scheduler.add_job(
            self._run,
            IntervalTrigger(seconds=group.interval, jitter=group.jitter or None),
            args=[group],
            id=group.job_id,
            name=group.job_id,
            next_run_time=self._now(),
            max_instances=1,
            coalesce=True,
            # None: a late run still runs (the 1 s default silently skips it).
            misfire_grace_time=None,
        )

    def replace(self, groups: Sequence[Group]) -> None:
        """Poll a new set of groups: new ones start now, gone ones stop, others keep their beat."""
        old = {g.job_id: g for g in self._groups}
        self._groups = list(groups)
        if self._scheduler.state != STATE_RUNNING:
            return  # not started (start() takes the new groups) or shutting down
        new = {g.job_id: g for g in groups}
        for job_id in old.keys() - new.keys():
            self._scheduler.remove_job(job_id)
        for job_id, group in new.items():
            before = old.get(job_id)
            if before is None:
                self._add(group)
                continue
            if before == group:
                continue
            # A poll already running keeps its old batch; the next run takes the new one.
            self._scheduler.modify_job(job_id, args=[group])
            if (before.interval, before.jitter) != (group.interval, group.jitter):
                self._scheduler.reschedule_job(
                    job_id,
                    trigger=IntervalTrigger(seconds=group.interval, jitter=group.jitter or None),
                )
        log.info(
            "schedule replaced",
            groups=len(new),
            added=len(new.keys() - old.keys()),
            removed=len(old.keys() - new.keys()),
        )

    async def _run(self, group: Group) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._inflight.add(task)
        try:
            await self._poll(group)
        except Exception:
            log.exception("poll failed unexpectedly", group=group.job_id)
        finally:
            if task is not None:
                self._inflight.discard(task)

    @property
    def busy(self) -> bool:
        """Whether a poll is running now."""
        return bool(self._inflight)

    async def stop(self, timeout: float) -> bool:
        """Stop scheduling and let in-flight polls finish their write; False if they timed out."""
        # Pause first: shutting the scheduler down cancels the tasks of running coroutine jobs.
        self._scheduler.pause()
        pending = set(self._inflight)
        still: set[asyncio.Task[object]] = set()
        if pending:
            _, still = await asyncio.wait(pending, timeout=timeout)
            for task in still:
                task.cancel()
        self._scheduler.shutdown(wait=False)
        return not still
