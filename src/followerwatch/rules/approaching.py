"""`approaching`: the trend will reach a threshold within a horizon (a projection, no crossing)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from followerwatch.models import Event, EventKind, EventStatus, Point, Projection, Severity
from followerwatch.rules.base import (
    Reading,
    compact_duration,
    dump_state,
    load_state,
    make_event,
    restate,
    who,
)
from followerwatch.rules.trend import DAY, project


@dataclass(frozen=True, slots=True)
class ApproachingState:
    """Whether an "approaching" event is open (re-arms once the estimate leaves the horizon)."""

    open: bool


@dataclass(frozen=True, slots=True)
class Approaching:
    """Fires once when a Theil–Sen fit over `window` puts a line less than `horizon` away."""

    lines: tuple[tuple[str, int], ...]
    horizon: float
    window: float = DAY

    @property
    def name(self) -> str:
        """The `rule` tag."""
        return f"approaching:{compact_duration(self.horizon)}"

    @property
    def history_seconds(self) -> float:
        """The fit's window."""
        return self.window

    def active(self, state: str | None) -> bool:
        """Whether an estimate inside the horizon is open."""
        st = load_state(ApproachingState, state)
        return st is not None and st.open

    def evaluate(self, state: str | None, reading: Reading) -> tuple[str | None, list[Event]]:
        """(state, reading) → (state, events)."""
        obs = reading.obs
        if obs is None:
            return state, []
        stored = load_state(ApproachingState, state)
        old = stored or ApproachingState(False)
        history = [*reading.history, (obs.time, obs.followers)]
        estimate = project(history, self.lines, window=self.window, horizon=self.horizon)
        inside = isinstance(estimate, Projection)
        if not inside or old.open:
            return restate(state, stored, ApproachingState(inside)), []
        assert isinstance(estimate, Projection)
        name = who(reading.account, obs.handle)
        message = f"{estimate.message(name)} (now {obs.followers:,}, {estimate.per_day:+,.0f}/day)"
        return dump_state(ApproachingState(True)), [
            make_event(
                self.name,
                EventKind.APPROACHING,
                reading,
                value=obs.followers,
                threshold=estimate.line,
                message=message,
                severity=Severity.INFO,
                status=EventStatus.ONCE,
            )
        ]


def projection_points(rules: Sequence[object], reading: Reading) -> list[Point]:
    """`followerwatch_projections` for accounts with an `approaching` rule: the ETA to a line."""
    out: list[Point] = []
    obs = reading.obs
    for rule in rules:
        if not isinstance(rule, Approaching) or obs is None:
            continue
        history = [*reading.history, (obs.time, obs.followers)]
        estimate = project(history, rule.lines, window=rule.window, horizon=365 * DAY)
        if isinstance(estimate, Projection):
            account = reading.account
            out.append(
                Point(
                    "followerwatch_projections",
                    (
                        ("platform", account.platform),
                        ("account", account.name),
                        ("direction", estimate.direction),
                    ),
                    (
                        ("line", estimate.line),
                        ("eta_s", int(estimate.seconds)),
                        ("per_day", round(estimate.per_day)),
                    ),
                    obs.time,
                )
            )
    return out
