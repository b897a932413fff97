"""Building blocks shared by every config model: strictness, `VAR`/`VAR_FILE` secrets, durations."""

from __future__ import annotations

import functools
import os
import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from followerwatch.durations import parse_duration
from followerwatch.errors import ConfigError

ENV_PREFIX = "FOLLOWERWATCH_"


def _duration(value: object) -> float:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise PydanticCustomError("duration", str(exc)) from None


Duration = Annotated[float, BeforeValidator(_duration)]


def _http_url(value: object) -> str:
    if not isinstance(value, str) or not re.match(r"^https?://[^\s/]+", value):
        raise PydanticCustomError("url", "must be an http:// or https:// URL")
    return value.rstrip("/")


HttpUrl = Annotated[str, BeforeValidator(_http_url)]


def _is_secret(annotation: Any) -> bool:
    if annotation is SecretStr:
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return SecretStr in typing.get_args(annotation)
    return False


@functools.cache
def _secret_fields(cls: type[BaseModel]) -> tuple[str, ...]:
    """The SecretStr fields of a model class (computed once per class)."""
    return tuple(n for n, info in cls.model_fields.items() if _is_secret(info.annotation))


class StrictModel(BaseModel):
    """Unknown keys are errors; every secret field `x` may instead be given as `x_file`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _read_secret_files(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        secret_fields = _secret_fields(cls)
        if not secret_fields:
            return data  # most models (every watch entry) have none: skip the copy
        data = dict(data)
        for name in secret_fields:
            file_key = f"{name}_file"
            path = data.pop(file_key, None)
            if path in (None, ""):
                continue
            if data.get(name) not in (None, ""):
                raise PydanticCustomError(
                    "secret_conflict",
                    "{name} and {file_key} are both set; set only one",
                    {"name": name, "file_key": file_key},
                )
            try:
                data[name] = Path(str(path)).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise PydanticCustomError(
                    "secret_file",
                    "{file_key}: cannot read {path}: {reason}",
                    {"file_key": file_key, "path": str(path), "reason": exc.strerror or "error"},
                ) from None
        return data


def _is_int(value: object) -> bool:
    """An int that is not a bool (True must not read as the number 1)."""
    return isinstance(value, int) and not isinstance(value, bool)


class MilestoneConfig(StrictModel):
    """A ladder (`every`) or a list (`levels`); `down` also announces falling back below one."""

    every: int | None = Field(default=None, ge=1)
    levels: list[int] = Field(default_factory=list)
    down: bool = False

    @model_validator(mode="after")
    def _one_kind(self) -> MilestoneConfig:
        if (self.every is None) == (not self.levels):
            raise PydanticCustomError("milestones", "set exactly one of every or levels")
        return self


class ChangeConfig(StrictModel):
    """A change within `window`: exactly one of drop, rise, drop_pct, rise_pct."""

    window: Duration
    drop: int | None = Field(default=None, ge=1)
    rise: int | None = Field(default=None, ge=1)
    drop_pct: float | None = Field(default=None, gt=0, le=100)
    rise_pct: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _one_kind(self) -> ChangeConfig:
        given = [v for v in (self.drop, self.rise, self.drop_pct, self.rise_pct) if v is not None]
        if len(given) != 1:
            raise PydanticCustomError("change", "set exactly one of drop, rise, drop_pct, rise_pct")
        if self.window <= 0:
            raise PydanticCustomError("change", "window must be longer than 0")
        return self


class RuleDefaults(StrictModel):
    """Alert rules; on a watch entry they override the platform's `defaults`."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    below: list[int] | None = None
    above: list[int] | None = None
    hysteresis: int | None = Field(default=None, ge=0)
    for_polls: int | None = Field(default=None, ge=1, alias="for")
    resolved: bool | None = None
    repeat: Duration | None = None
    milestones: MilestoneConfig | None = None
    changes: list[ChangeConfig] | None = None
    stale: Duration | None = None
    frozen: Duration | None = None
    lifecycle: bool | None = None
    # Announce when the trend will reach a below/above line within this horizon.
    approaching: Duration | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthands(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        below, above, milestones = data.get("below"), data.get("above"), data.get("milestones")
        # Runs for every watch entry: copy only when a shorthand is there to expand.
        if not (_is_int(below) or _is_int(above) or _is_int(milestones)) and not isinstance(
            milestones, list
        ):
            return data
        data = dict(data)
        if _is_int(below):
            data["below"] = [below]
        if _is_int(above):
            data["above"] = [above]
        if _is_int(milestones):
            data["milestones"] = {"every": milestones}
        elif isinstance(milestones, list):
            data["milestones"] = {"levels": milestones}
        return data

    def merged_over(self, defaults: RuleDefaults) -> RuleDefaults:
        """These rules with anything they leave unset taken from `defaults`."""
        own = {k: getattr(self, k) for k in self.model_fields_set if k in RuleDefaults.model_fields}
        return RuleDefaults.model_validate({**defaults.model_dump(exclude_unset=True), **own})


class ReplayConfig(StrictModel):
    """Serve a platform's accounts from a CSV (`timestamp,platform,account,followers`)."""

    file: Path
    speed: float = Field(default=0.0, ge=0.0)


class PlatformConfig(StrictModel):
    """Settings every platform has: polling cadence, batch size, rule defaults, optional replay."""

    interval: Duration = 300.0
    jitter: Duration = 0.0
    # How long a fall to exactly 0 (from 100 or more) must last, over at least two polls,
    # before it is believed: such glitches (a profile read as all zeros) last minutes.
    zero_confirm: Duration = 900.0
    batch_size: int | None = Field(default=None, ge=1)
    # The longest rate-limit wait believed (reset, Retry-After, quota): the platform's documented
    # window, overridden per platform; a longer one is cut to this and the platform retried then.
    max_backoff: Duration = 900.0
    defaults: RuleDefaults = RuleDefaults()
    replay: ReplayConfig | None = None

    # Secrets without which the platform cannot be polled (checked only if it has accounts).
    required_secrets: ClassVar[tuple[str, ...]] = ()

    @field_validator("max_backoff")
    @classmethod
    def _believable_backoff(cls, value: float) -> float:
        # Back-offs start at 1 s; beyond a year a reset is far past any platform's window.
        if not 1.0 <= value <= 365 * 86400.0:
            raise ValueError("must be between 1s and 365d")
        return value

    def secrets(self) -> list[str]:
        """Every secret value this config holds, for log redaction."""
        out = []
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr) and value.get_secret_value():
                out.append(value.get_secret_value())
        return out


def safe_text(text: object) -> str:
    """User text fit for a one-line message: control characters escaped, length capped."""
    out = str(text).encode("unicode_escape").decode("ascii")
    return out if len(out) <= 60 else out[:57] + "..."


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def one_line(
    exc: ValidationError,
    where: str,
    data: dict[str, Any] | None = None,
    prefix: tuple[str, ...] = (),
    *,
    shift: int = 0,
    more: int = 0,
) -> ConfigError:
    """The first validation error as one line: file, key (watch entries by platform/handle).

    `shift` is added to the list index after `prefix` (for a list validated in chunks); `more`
    counts errors found beyond `exc`.
    """
    errors = exc.errors(include_input=False, include_url=False)
    first = errors[0]
    loc = prefix + tuple(
        p for p in first["loc"] if not (isinstance(p, str) and p.startswith("function-"))
    )
    if shift and len(loc) > len(prefix) and isinstance(loc[len(prefix)], int):
        index = len(prefix)
        loc = (*loc[:index], int(loc[index]) + shift, *loc[index + 1 :])
    key = _loc(loc) or "(top level)"
    env_name = ENV_PREFIX + "__".join(str(p) for p in loc).upper()
    if env_name in os.environ:
        where = f"environment {env_name}"
    if data is not None and len(loc) >= 2 and loc[0] == "watch" and isinstance(loc[1], int):
        entries = data.get("watch") or []
        if loc[1] < len(entries) and isinstance(entries[loc[1]], dict):
            entry = entries[loc[1]]
            head = (
                f"watch[{loc[1]}] ({safe_text(entry.get('platform', '?'))}/"
                f"{safe_text(entry.get('handle', '?'))})"
            )
            key = head + (f".{_loc(loc[2:])}" if len(loc) > 2 else "")
    others = len(errors) - 1 + more
    tail = f" (and {others} more)" if others else ""
    msg = first["msg"].replace("\n", " ")
    return ConfigError(f"{where}: {key}: {msg}{tail}")
