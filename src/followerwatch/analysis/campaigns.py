"""Campaigns: a window over target accounts; events at its start and end, an impact report after."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta

import structlog

from followerwatch.analysis.campaign_config import CampaignConfig, split
from followerwatch.analysis.impact import Impact, analyse, load_series
from followerwatch.clock import Clock
from followerwatch.errors import StoreError
from followerwatch.models import Event, EventKind, EventStatus, Severity, at_handle
from followerwatch.state.base import StateBackend
from followerwatch.store.base import QueryableStore

log = structlog.get_logger("followerwatch.campaigns")


async def impact_report(store: QueryableStore, campaign: CampaignConfig) -> list[Impact]:
    """The impact of a campaign on each target, from InfluxDB."""
    since = campaign.start - timedelta(seconds=campaign.baseline)
    until = campaign.end + timedelta(hours=1)
    controls = [await load_series(store, *split(c), since, until) for c in campaign.controls]
    out = []
    for ref in campaign.accounts:
        series = await load_series(store, *split(ref), since, until)
        report = analyse(
            at_handle(split(ref)[1]),
            series,
            campaign.start,
            campaign.end,
            baseline=campaign.baseline,
            controls=controls,
            goal=campaign.goal.pair() if campaign.goal else None,
        )
        if report is not None:
            out.append(report)
    return out


def campaign_key(campaign: CampaignConfig) -> tuple[str, str]:
    """The state key a campaign's phases are kept under."""
    return ("followerwatch", f"campaign:{campaign.name}")


class CampaignRunner:
    """Raises `campaign_started` / `campaign_ended` once each, then one report per target."""

    def __init__(
        self,
        campaigns: Sequence[CampaignConfig],
        state: StateBackend,
        store: QueryableStore,
        clock: Clock,
        route: Callable[[Event], Iterable[str]],
        owns: Callable[[tuple[str, str]], bool] = lambda key: True,
    ) -> None:
        # Replicas (PostgreSQL): a campaign is run by whoever holds its key's shard, once.
        self.owns = owns
        self.campaigns = list(campaigns)
        self.state = state
        self.store = store
        self.clock = clock
        self.route = route

    async def run(self, stop: asyncio.Event, kick: Callable[[], None], every: float = 30.0) -> None:
        """Check the campaigns until `stop`; `kick` wakes the outbox when something was raised."""
        while not stop.is_set():
            try:
                if await self.check():
                    kick()
            except Exception:  # the loop must outlive any one failure
                log.exception("campaign check failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=every)

    async def check(self, now: datetime | None = None) -> list[Event]:
        """Raise whatever is due (at most once per campaign and phase, across restarts)."""
        now = now or self.clock.now()
        raised: list[Event] = []
        for campaign in self.campaigns:
            if not self.owns(campaign_key(campaign)):
                continue
            done = self._phases(campaign)
            if now >= campaign.start and "started" not in done:
                raised.append(
                    self._event(
                        campaign,
                        EventKind.CAMPAIGN_STARTED,
                        EventStatus.FIRING,
                        campaign.start,
                        f"campaign {campaign.name} started: {', '.join(campaign.accounts)}",
                    )
                )
                done.add("started")
            if now >= campaign.end and "ended" not in done:
                try:
                    reports = await impact_report(self.store, campaign)
                except StoreError as exc:
                    log.warning("campaign report postponed", campaign=campaign.name, error=str(exc))
                    self._save(campaign, done)
                    continue
                raised.append(
                    self._event(
                        campaign,
                        EventKind.CAMPAIGN_ENDED,
                        EventStatus.RESOLVED,
                        campaign.end,
                        f"campaign {campaign.name} ended",
                    )
                )
                # Each report names its account as messages do; the event takes the account.
                names = {at_handle(split(ref)[1]): split(ref)[1] for ref in campaign.accounts}
                for report in reports:
                    raised.append(
                        self._event(
                            campaign,
                            EventKind.CAMPAIGN_REPORT,
                            EventStatus.ONCE,
                            campaign.end,
                            "; ".join(report.lines()),
                            report.observed,
                            account=names.get(report.who, report.who),
                        )
                    )
                done.add("ended")
            self._save(campaign, done)
        self.state.events.add_events(raised, self.route)
        return raised

    def _phases(self, campaign: CampaignConfig) -> set[str]:
        raw = self.state.rules.rule_states(*campaign_key(campaign)).get("campaign")
        return set(json.loads(raw)) if raw else set()

    def _save(self, campaign: CampaignConfig, done: set[str]) -> None:
        self.state.rules.set_rule_state(
            *campaign_key(campaign), "campaign", json.dumps(sorted(done))
        )

    def _event(
        self,
        campaign: CampaignConfig,
        kind: EventKind,
        status: EventStatus,
        time: datetime,
        message: str,
        value: int = 0,
        account: str | None = None,
    ) -> Event:
        key = f"campaign|{campaign.name}|{kind}|{account}"
        return Event(
            id=str(uuid.uuid5(uuid.NAMESPACE_URL, key)),
            time=time,
            platform="followerwatch",
            account=account or f"campaign:{campaign.name}",
            rule=f"campaign:{campaign.name}",
            kind=kind,
            value=value,
            threshold=campaign.goal.pair()[1] if campaign.goal else 0,
            message=message,
            severity=Severity.INFO,
            status=status,
        )
