"""Runs one poll of one batch: source → pipeline, with source health logged once per change."""

from __future__ import annotations

import time
from collections.abc import Sequence

import structlog

from followerwatch.clock import Clock
from followerwatch.errors import AuthError, RateLimitedError, SourceError
from followerwatch.models import Account, FetchResult, Point, bounded
from followerwatch.poll.account_failures import AccountFailures
from followerwatch.poll.batch import Row
from followerwatch.poll.pipeline import Pipeline
from followerwatch.sources.base import Source
from followerwatch.store.schema import poll_point

log = structlog.get_logger("followerwatch.collector")

_OUTCOME = {AuthError: "auth", RateLimitedError: "rate_limited"}


class Collector:
    """Polls a platform's batches through its source and hands results to the pipeline."""

    def __init__(
        self,
        platform: str,
        source: Source,
        pipeline: Pipeline,
        clock: Clock,
        failures: AccountFailures | None = None,
    ) -> None:
        self.platform = platform
        self.source = source
        # A rate-limit wait cut to max_backoff is logged once, until a poll succeeds again.
        self._not_believed = False
        self.pipeline = pipeline
        self.clock = clock
        self._down: dict[str, str] = {}
        # Shared by every platform's collector and kept across reloads (see App).
        self.failures = failures or AccountFailures()

    async def poll(self, accounts: Sequence[Account], group: str = "0") -> list[Row]:
        """One poll of one batch group; never raises for source failures."""
        started = time.monotonic()
        accounts = self._with_known_ids(accounts)
        try:
            # No count outside the storable range gets past here, whichever source made it.
            result = bounded(await self.source.fetch(accounts))
        except SourceError as exc:
            outcome = next((v for k, v in _OUTCOME.items() if isinstance(exc, k)), "error")
            if group not in self._down:
                log.error(
                    "source down",
                    platform=self.platform,
                    group=group,
                    outcome=outcome,
                    error=str(exc),
                    accounts=len(accounts),
                )
            self._down[group] = outcome
            if isinstance(exc, RateLimitedError):
                self._log_not_believed(exc)
            await self.pipeline.process(
                FetchResult(),
                [self._health(group, outcome, started, accounts, FetchResult())],
                polled=accounts,
            )
            status = f"source {outcome}: {exc}"
            return [
                Row(self.platform, a.name, None, None, failure=status, source_down=True)
                for a in accounts
            ]
        if group in self._down:
            log.info(
                "source recovered", platform=self.platform, group=group, was=self._down.pop(group)
            )
        self.failures.update(result.observations, result.failures)
        outcome = "partial" if result.failures else "ok"
        health = self._health(group, outcome, started, accounts, result)
        self._not_believed = False
        return await self.pipeline.process(result, [health], polled=accounts)

    def _log_not_believed(self, exc: RateLimitedError) -> None:
        """Say once that the platform named a wait beyond max_backoff, and when it is retried."""
        if exc.not_believed is None or self._not_believed:
            return
        self._not_believed = True
        log.warning(
            "rate-limit wait not believed",
            platform=self.platform,
            asked_until=exc.not_believed.isoformat(),
            retry_at=exc.retry_at.isoformat() if exc.retry_at is not None else None,
        )

    def _with_known_ids(self, accounts: Sequence[Account]) -> list[Account]:
        """Fill in the stable ids learnt on earlier polls, so renamed handles still resolve."""
        # Only this batch's names: reading every id of the platform per batch is quadratic.
        missing = [a.name for a in accounts if not a.platform_id]
        known = (
            self.pipeline.state.accounts.platform_ids_of(self.platform, missing) if missing else {}
        )
        if not known:
            return list(accounts)
        # The constructor directly: dataclasses.replace costs several times more per account.
        return [
            a
            if a.platform_id or a.name not in known
            else Account(a.platform, a.handle, a.name, known[a.name], a.labels)
            for a in accounts
        ]

    def _health(
        self,
        group: str,
        outcome: str,
        started: float,
        accounts: Sequence[Account],
        result: FetchResult,
    ) -> Point:
        rl = result.rate_limit
        return poll_point(
            platform=self.platform,
            group=group,
            outcome=outcome,
            time=self.clock.now(),
            accounts=len(accounts),
            observations=len(result.observations),
            failures=len(result.failures),
            requests=result.requests,
            duration_ms=int((time.monotonic() - started) * 1000),
            ratelimit_remaining=rl.remaining if rl else None,
        )
