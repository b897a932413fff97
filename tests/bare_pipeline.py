"""A pipeline with no writer and no outbox, over a real state database: rules and state only."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from followerwatch.clock import ManualClock
from followerwatch.poll.pipeline import Pipeline
from followerwatch.rules.base import Rule
from followerwatch.state.db import StateDB


def bare_pipeline(
    state: StateDB,
    rules: Mapping[tuple[str, str], Sequence[Rule]],
    start: datetime,
    **extra: Any,
) -> Pipeline:
    """Rules evaluated against `state`, events routed to "log", on a clock standing at `start`."""
    return Pipeline(
        state=state,
        writer=None,
        outbox=None,
        clock=ManualClock(start),
        route=lambda e: ["log"],
        rules=rules,
        **extra,
    )
