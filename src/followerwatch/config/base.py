"""The config models' base classes: strictness, `x_file` secrets, rule defaults, one-line errors."""

from __future__ import annotations

import functools
import os
import types
import typing
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

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

from followerwatch.config.fields import (
    Count,
    Duration,
    PositiveCount,
    PositiveDuration,
    secret_problem,
)
from followerwatch.config.files import CONFIG_KEY, read_secret_file, resolve_path
from followerwatch.errors import ConfigError
from followerwatch.models import MAX_COUNT
from followerwatch.units import parse_count

ENV_PREFIX = "FOLLOWERWATCH_"

# Secrets sent in an HTTP header (tokens, keys, header values), by the name of their field;
# passwords and client secrets go through Basic auth or a form body, Apprise URLs to Apprise.
_HEADER_SECRETS = ("token", "tokens", "key", "headers")


def _is_secret(annotation: Any) -> bool:
    if annotation is SecretStr:
        return True
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return SecretStr in typing.get_args(annotation)
    return False


def _holds_secrets(annotation: Any) -> bool:
    """A list or dict of secrets (Apprise URLs, per-instance tokens, secret headers)."""
    origin = typing.get_origin(annotation)
    return origin in (list, dict) and typing.get_args(annotation)[-1:] == (SecretStr,)


@functools.cache
def _secret_fields(cls: type[BaseModel]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The SecretStr fields of a model class, then its lists and dicts of secrets (cached)."""
    fields = cls.model_fields.items()
    return (
        tuple(n for n, info in fields if _is_secret(info.annotation)),
        tuple(n for n, info in fields if _holds_secrets(info.annotation)),
    )


def _bad_secret(key: str, problem: str, path: Path | None = None) -> PydanticCustomError:
    # The value itself never goes into the message; the file it came from does.
    if path is None:
        return PydanticCustomError("secret", "{problem}", {"problem": problem, CONFIG_KEY: key})
    return PydanticCustomError(
        "secret", "{path}: {problem}", {"path": str(path), "problem": problem, CONFIG_KEY: key}
    )


class StrictModel(BaseModel):
    """Unknown keys are errors; every secret field `x` may instead be given as `x_file`.

    A secret, from the file or inline, must be one non-empty line.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _read_secret_files(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        secret_fields, collections = _secret_fields(cls)
        if not secret_fields and not collections:
            return data  # most models (every watch entry) have none: skip the copy
        data = dict(data)
        for name in secret_fields:
            file_key = f"{name}_file"
            path = data.pop(file_key, None)
            if path not in (None, ""):
                if data.get(name) not in (None, ""):
                    raise PydanticCustomError(
                        "secret_conflict",
                        "{name} and {file_key} are both set; set only one",
                        {"name": name, "file_key": file_key},
                    )
                resolved = resolve_path(path, file_key)
                data[name] = read_secret_file(resolved, file_key).strip()
                problem = secret_problem(data[name], name.endswith(_HEADER_SECRETS))
                if problem is not None:
                    problem = "the file is empty" if problem == "must not be empty" else problem
                    raise _bad_secret(file_key, problem, resolved)
                continue
            problem = secret_problem(data.get(name), name.endswith(_HEADER_SECRETS))
            if problem is not None:
                raise _bad_secret(name, problem)
        for name in collections:
            value = data.get(name)
            if isinstance(value, dict):
                items = [(f"{name}.{key}", item) for key, item in value.items()]
            elif isinstance(value, list):
                items = [(f"{name}[{index}]", item) for index, item in enumerate(value)]
            else:
                continue
            for key, item in items:
                problem = secret_problem(item, name.endswith(_HEADER_SECRETS))
                if problem is not None:
                    raise _bad_secret(key, problem)
        return data


def _is_list_or_none(value: object) -> bool:
    return value is None or isinstance(value, list)


class MilestoneConfig(StrictModel):
    """A ladder (`every`) or a list (`levels`); `down` also announces falling back below one."""

    every: PositiveCount | None = None
    levels: list[Count] = Field(default_factory=list)
    down: bool = False

    @model_validator(mode="after")
    def _one_kind(self) -> MilestoneConfig:
        if (self.every is None) == (not self.levels):
            raise PydanticCustomError("milestones", "set exactly one of every or levels")
        return self


class ChangeConfig(StrictModel):
    """A change within `window`: exactly one of drop, rise, drop_pct, rise_pct."""

    window: Duration
    drop: PositiveCount | None = None
    rise: PositiveCount | None = None
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


class UnusualConfig(StrictModel):
    """`unusual`: how far outside the account's own behaviour (sensitivity), which way, how much."""

    sensitivity: Literal["low", "normal", "high"] = "normal"
    direction: Literal["down", "up", "both"] = "down"
    min_change: Count = 100


def _unusual(value: object) -> object:
    """`true` is the defaults, `false` is off (None, which also overrides a platform default)."""
    if value is True:
        return UnusualConfig()
    if value is False:
        return None
    if value is None or isinstance(value, dict | UnusualConfig):
        return value  # None: a resolved `false`, read back by merged_over
    raise PydanticCustomError(
        "unusual", "must be true, false or a table of sensitivity, direction and min_change"
    )


class RuleDefaults(StrictModel):
    """Alert rules; on a watch entry they override the platform's `defaults`."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    below: list[Count] | None = None
    above: list[Count] | None = None
    hysteresis: Count | None = None
    for_polls: int | None = Field(default=None, ge=1, le=MAX_COUNT, alias="for")
    resolved: bool | None = None
    repeat: Duration | None = None
    milestones: MilestoneConfig | None = None
    changes: list[ChangeConfig] | None = None
    stale: Duration | None = None
    frozen: Duration | None = None
    lifecycle: bool | None = None
    # Announce when the trend will reach a below/above line within this horizon.
    approaching: Duration | None = None
    # Fires when the change per hour leaves the account's own normal (rules/unusual.py).
    unusual: Annotated[UnusualConfig | None, BeforeValidator(_unusual)] = None

    @model_validator(mode="before")
    @classmethod
    def _shorthands(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        below, above, milestones = data.get("below"), data.get("above"), data.get("milestones")
        # Runs for every watch entry: copy only when a shorthand is there to expand.
        if (
            _is_list_or_none(below)
            and _is_list_or_none(above)
            and (milestones is None or isinstance(milestones, dict | BaseModel))
        ):
            return data
        data = dict(data)
        for key, value in (("below", below), ("above", above)):
            if not _is_list_or_none(value):
                # One value where a list is allowed: a count, named by its key if it is not one.
                try:
                    data[key] = [parse_count(value)]
                except ValueError as exc:
                    raise PydanticCustomError(
                        "count", "{problem}", {"problem": str(exc), CONFIG_KEY: key}
                    ) from None
        if isinstance(milestones, list):
            data["milestones"] = {"levels": milestones}
        elif milestones is not None and not isinstance(milestones, dict | BaseModel):
            data["milestones"] = {"every": milestones}
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

    interval: PositiveDuration = 300.0
    jitter: Duration = 0.0
    # How long a fall to exactly 0 (from 100 or more) must last, over at least two polls,
    # before it is believed: such glitches (a profile read as all zeros) last minutes.
    zero_confirm: Duration = 900.0
    batch_size: int | None = Field(default=None, ge=1, le=MAX_COUNT)
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
        # Back-offs start at 1 s (the longest, MAX_DURATION, every duration has already).
        if value < 1.0:
            raise ValueError("must be at least 1s")
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
    tags: frozenset[str] = frozenset(),
) -> ConfigError:
    """The first validation error as one line: file, key (watch entries by platform/handle).

    `shift` is added to the list index after `prefix` (for a list validated in chunks); `more`
    counts errors found beyond `exc`; `tags` are the tags of tagged-union lists (left out).
    """
    errors = exc.errors(include_input=False, include_url=False)
    first = errors[0]
    raw_loc = first["loc"]
    # Not keys the user wrote: validator names, a dict key's marker, a tagged union's tag.
    loc = prefix + tuple(
        p
        for i, p in enumerate(raw_loc)
        if not (isinstance(p, str) and (p.startswith("function-") or p == "[key]"))
        and not (p in tags and i > 0 and isinstance(raw_loc[i - 1], int))
    )
    # A model-level check about one of its keys names that key (see _bad_secret).
    named = (first.get("ctx") or {}).get(CONFIG_KEY)
    if isinstance(named, str):
        loc = (*loc, named)
    if shift and len(loc) > len(prefix) and isinstance(loc[len(prefix)], int):
        index = len(prefix)
        loc = (*loc[:index], int(loc[index]) + shift, *loc[index + 1 :])
    key = _loc(loc) or "(top level)"
    env_name = ENV_PREFIX + "__".join(str(p) for p in loc).upper()
    # A secret given as `x_file` is checked (and named) as `x`.
    for name in (env_name, f"{env_name}_FILE"):
        if name in os.environ:
            where = f"environment {name}"
            break
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
