"""The `[[campaigns]]` config: which accounts, which window, which controls and goal."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from followerwatch.config.base import StrictModel
from followerwatch.config.fields import Count, PositiveDuration


class GoalConfig(StrictModel):
    """`goal = { below = 1_000_000 }` (or `above`)."""

    below: Count | None = None
    above: Count | None = None

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
    baseline: PositiveDuration = 7 * 86_400.0

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
