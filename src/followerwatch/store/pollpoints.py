"""A poll's points, and any points turned into line protocol for the spool."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, overload

import structlog

from followerwatch.models import Observation, Point
from followerwatch.store.lineprotocol import encode
from followerwatch.store.schema import observation_line, observation_lines, observation_point
from followerwatch.store.thresholds import (
    Lines,
    observation_threshold_lines,
    observation_threshold_points,
)

# The writer's logger: a point it cannot encode is its problem to report.
log = structlog.get_logger("followerwatch.writer")


class PollPoints(Sequence[Point]):
    """A poll's points: the Points of its observations and their lines are only built if read.

    Every observation's count carries the distance to its account's nearest line (`thresholds`)
    and its `unusual` score if `scores` has one (by its place in `observations`); the lines
    themselves go only with the observations in `due` (LineSchedule's choice). The writer encodes
    the observations straight to line protocol; anything else that reads the sequence still sees
    every point.
    """

    def __init__(
        self,
        observations: Sequence[Observation],
        thresholds: Lines,
        points: Sequence[Point],
        due: Sequence[Observation] = (),
        scores: Mapping[int, float] | None = None,
    ) -> None:
        self.observations = observations
        self.scores: Mapping[int, float] = scores or {}
        self.thresholds = thresholds
        self.points = points
        self.due = due
        self._all: list[Point] | None = None

    def _built(self) -> list[Point]:
        if self._all is None:
            lines, score = self.thresholds, self.scores.get
            self._all = [
                *(
                    observation_point(o, lines.get(o.account.key, ()), score(i))
                    for i, o in enumerate(self.observations)
                ),
                *observation_threshold_points(lines, self.due),
                *self.points,
            ]
        return self._all

    def __len__(self) -> int:
        return len(self._built())

    @overload
    def __getitem__(self, index: int) -> Point: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Point]: ...

    def __getitem__(self, index: int | slice) -> Point | Sequence[Point]:
        return self._built()[index]


def encode_lines(points: Sequence[Point], precision: str) -> tuple[list[str], int]:
    """Points as line protocol (a poll's counts straight from its observations), and how many
    points could not be encoded (left out)."""
    lines: list[str] = []
    rejected = 0

    def encoded(encoder: Callable[..., str | list[str]], *args: Any) -> None:
        nonlocal rejected
        try:
            line = encoder(*args)
        except ValueError as exc:
            # Validation runs at config load, so this is a bug; keep going without the point.
            rejected += 1
            log.error("point cannot be encoded; skipped", error=str(exc))
            return
        if isinstance(line, str):
            lines.append(line)
        else:
            lines.extend(line)

    if isinstance(points, PollPoints):
        # A poll's counts go straight to line protocol: no Point per observation. All at
        # once, and one by one only to leave out a line that cannot be encoded.
        observations, thresholds, due = points.observations, points.thresholds, points.due
        of, scores = thresholds.get, points.scores
        try:
            lines += observation_lines(observations, precision, thresholds, scores)
        except ValueError:
            for i, obs in enumerate(observations):
                score = scores.get(i)
                encoded(observation_line, obs, precision, of(obs.account.key, ()), score)
        if due:
            try:
                more: list[str] = []
                for obs in due:
                    more += observation_threshold_lines(thresholds, obs, precision)
                lines += more
            except ValueError:
                for obs in due:
                    encoded(observation_threshold_lines, thresholds, obs, precision)
        points = points.points
    for point in points:
        encoded(encode, point, precision)
    return lines, rejected
