"""Campaigns: a window over target accounts; events at its start and end, an impact report after."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Literal

import structlog
from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from followerwatch.clock import Clock
from followerwatch.configbase import Duration, StrictModel
from followerwatch.errors import StoreError
from followerwatch.impact import Impact, analyse, load_series
from followerwatch.models import Event, EventKind, EventStatus, Severity
from followerwatch.state import StateDB
from followerwatch.store.base import QueryableStore

log = structlog.get_logger("followerwatch.campaigns")


class GoalConfig(StrictModel):
    """`goal = { below = 1_000_000 }` (or `above`)."""

    below: int | None = None
    above: int | None = None

    @model_validator(mode="after")
    def _one(self) -> GoalConfig:
        if (self.below is None) == (self.above is None):
            raise PydanticCustomError("goal", "set exactly one of below or above")
        return self

    def pair(self) -> tuple[Literal["below", "above"], int]:
        """(direction, line)."""
        return ("below", self.below) if self.below is not None else ("above", self.above or 0)


class CampaignConfig(StrictModel):
    """`[[campaigns]]`: accounts are `platform/name` (the watchlist's `account` tag)."""

    name: str = Field(min_length=1, max_length=100)
    accounts: list[str] = Field(min_length=1)
    start: datetime
    end: datetime
    controls: list[str] = Field(default_factory=list)
    goal: GoalConfig | None = None
    baseline: Duration = 7 * 86_400.0

    @model_validator(mode="after")
    def _window(self) -> CampaignConfig:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise PydanticCustomError("campaign", "start and end need a time zone (e.g. Z)")
        if self.end <= self.start:
            raise PydanticCustomError("campaign", "end must be after start")
        for ref in (*self.accounts, *self.controls):
            if "/" not in ref:
                raise PydanticCustomError(
                    "campaign", "accounts are written platform/name, e.g. x/aplusk"
                )
        return self


def split(ref: str) -> tuple[str, str]:
    """'x/aplusk' → ('x', 'aplusk')."""
    platform, _, name = ref.partition("/")
    return platform, name


async def impact_report(store: QueryableStore, campaign: CampaignConfig) -> list[Impact]:
    """The impact of a campaign on each target, from InfluxDB."""
    since = campaign.start - timedelta(seconds=campaign.baseline)
    until = campaign.end + timedelta(hours=1)
    controls = [await load_series(store, *split(c), since, until) for c in campaign.controls]
    out = []
    for ref in campaign.accounts:
        series = await load_series(store, *split(ref), since, until)
        report = analyse(
            f"@{split(ref)[1]}",
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


class CampaignRunner:
    """Raises `campaign_started` / `campaign_ended` once each, then one report per target."""

    def __init__(
        self,
        campaigns: Sequence[CampaignConfig],
        state: StateDB,
        store: QueryableStore,
        clock: Clock,
        route: Callable[[Event], Iterable[str]],
    ) -> None:
        self.campaigns = list(campaigns)
        self.state = state
        self.store = store
        self.clock = clock
        self.route = route

    async def check(self, now: datetime | None = None) -> list[Event]:
        """Raise whatever is due (at most once per campaign and phase, across restarts)."""
        now = now or self.clock.now()
        raised: list[Event] = []
        for campaign in self.campaigns:
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
                for report in reports:
                    raised.append(
                        self._event(
                            campaign,
                            EventKind.CAMPAIGN_REPORT,
                            EventStatus.ONCE,
                            campaign.end,
                            "; ".join(report.lines()),
                            report.observed,
                            account=report.who.lstrip("@"),
                        )
                    )
                done.add("ended")
            self._save(campaign, done)
        self.state.add_events(raised, self.route)
        return raised

    def _phases(self, campaign: CampaignConfig) -> set[str]:
        raw = self.state.rule_states("followerwatch", f"campaign:{campaign.name}").get("campaign")
        return set(json.loads(raw)) if raw else set()

    def _save(self, campaign: CampaignConfig, done: set[str]) -> None:
        self.state.set_rule_state(
            "followerwatch", f"campaign:{campaign.name}", "campaign", json.dumps(sorted(done))
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
