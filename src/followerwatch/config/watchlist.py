"""The [[watch]] entries: their model, and their resolution into accounts and rules."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import Field, TypeAdapter, ValidationError, field_validator

from followerwatch.config.base import RuleDefaults, one_line, safe_text
from followerwatch.errors import ConfigError
from followerwatch.models import Account
from followerwatch.sources import REGISTRY
from followerwatch.store.lineprotocol import escape_key

_NAME = re.compile(r"^[^\x00-\x1f\x7f]{1,100}$")
_LABEL_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_RESERVED_TAGS = {"platform", "account", "time"}


def _storable(value: str, what: str = "the name") -> None:
    """Reject at load what InfluxDB could not store as a tag (or could be injected through it)."""
    if not _NAME.match(value):
        raise ValueError(f"{what} must be 1-100 characters with no control characters")
    try:
        escape_key("tag value", value)
    except ValueError as exc:
        raise ValueError(f"{what} cannot be an InfluxDB tag value: {exc}") from None


class WatchEntry(RuleDefaults):
    """One account on the watchlist."""

    platform: str
    handle: str
    name: str | None = None
    id: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("platform")
    @classmethod
    def _known_platform(cls, value: str) -> str:
        if value not in REGISTRY:
            raise ValueError(f"unknown platform {value!r}; known: {', '.join(sorted(REGISTRY))}")
        return value

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str | None) -> str | None:
        if value is not None:
            _storable(value)
        return value

    @field_validator("labels")
    @classmethod
    def _valid_labels(cls, value: dict[str, str]) -> dict[str, str]:
        for key, val in value.items():
            if not _LABEL_KEY.match(key) or key in _RESERVED_TAGS:
                raise ValueError(
                    f"label key {key!r} must be an identifier and not {_RESERVED_TAGS}"
                )
            _storable(val, f"label {key!r}")
        return value


_WATCH_LIST = TypeAdapter(list[WatchEntry])
_RULE_KEYS = frozenset(RuleDefaults.model_fields)
# Entries validated per pydantic call: big enough to amortise the call, small enough that the
# models of one chunk (about 1 KB each) never add up to much.
CHUNK = 2000

RuleMap = dict[tuple[str, str], RuleDefaults]


def resolve_watch(
    pieces: Iterable[object], defaults: Mapping[str, RuleDefaults], where: str
) -> tuple[list[Account], RuleMap]:
    """The accounts and resolved rules of the entry lists in `pieces`, consumed as they go.

    Entries are validated a chunk at a time, and a chunk's raw dicts and models are dropped
    once they are accounts, so 100,000 entries never exist as models all at once. Errors are
    those of a single pass: the first validation error (counting all), else the first bad
    handle or duplicate.
    """
    builder = _Builder(defaults, where)
    failure: tuple[ValidationError, int, list[Any]] | None = None
    more = 0
    base = 0
    for raw in pieces:
        if not isinstance(raw, list):
            try:
                _WATCH_LIST.validate_python(raw)
            except ValidationError as exc:
                raise one_line(exc, where, {"watch": raw}, prefix=("watch",)) from None
            raise AssertionError("a non-list cannot validate as a list")
        for start in range(0, len(raw), CHUNK):
            chunk = raw[start : start + CHUNK]
            try:
                entries = _WATCH_LIST.validate_python(chunk)
            except ValidationError as exc:
                if failure is None:
                    failure = (exc, base + start, chunk)
                else:
                    more += exc.error_count()
                continue
            if failure is None and builder.error is None:
                builder.add(entries, base + start)
                raw[start : start + CHUNK] = [None] * len(chunk)
        base += len(raw)
    if failure is not None:
        first, start, chunk = failure
        # Padded so that the error's index finds its entry (for the platform/handle shown).
        data = {"watch": [None] * start + chunk}
        raise one_line(first, where, data, ("watch",), shift=start, more=more) from None
    if builder.error is not None:
        raise builder.error
    return builder.accounts, builder.rules


class _Builder:
    """Accounts and rules from validated entries; the first bad handle or duplicate is kept."""

    def __init__(self, defaults: Mapping[str, RuleDefaults], where: str) -> None:
        self.defaults = defaults
        self.where = where
        self.accounts: list[Account] = []
        self.rules: RuleMap = {}
        self.error: ConfigError | None = None
        # Lower-cased handles per platform, kept as the handle itself when already lower case:
        # 100,000 (platform, copy) tuples would be 12 MB more at the peak of the load.
        self._seen: dict[str, set[str]] = {key: set() for key in REGISTRY}
        # One str object per platform name instead of one per account.
        self._platforms = {key: key for key in REGISTRY}
        # Entries with the same rule keys share one merged RuleDefaults (and later one rule
        # list): 100,000 accounts usually have a handful of distinct rule configs.
        self._merged: RuleMap = {}

    def _head(self, index: int, platform: str, handle: str) -> str:
        return f"{self.where}: watch[{index}] ({platform}/{safe_text(handle)})"

    def add(self, entries: list[WatchEntry], start: int) -> None:
        """Resolve `entries`, the first at index `start`; stop at the first bad one."""
        accounts, rules, seen, merged = self.accounts, self.rules, self._seen, self._merged
        for index, entry in enumerate(entries, start):
            platform, handle = self._platforms[entry.platform], entry.handle
            spec = REGISTRY[platform]
            if not spec.handle_pattern.match(handle):
                self.error = ConfigError(
                    f"{self._head(index, platform, handle)}.handle: not a valid {spec.title} "
                    f"handle (must match {spec.handle_pattern.pattern})"
                )
                return
            name = entry.name or handle
            lowered = handle.lower()
            folded = handle if lowered == handle else lowered
            if folded in seen[platform] or (platform, name) in rules:
                self.error = ConfigError(
                    f"{self._head(index, platform, handle)}: duplicate of an earlier entry "
                    f"on {platform}"
                )
                return
            seen[platform].add(folded)
            own = sorted(entry.model_fields_set & _RULE_KEYS)
            if not own:
                rules[(platform, name)] = self.defaults[platform]
            else:
                # repr tells apart what equality would not (1 and 1.0), and it hashes.
                key = (platform, repr([(k, getattr(entry, k)) for k in own]))
                rule = merged.get(key)
                if rule is None:
                    rule = merged[key] = entry.merged_over(self.defaults[platform])
                rules[(platform, name)] = rule
            accounts.append(
                Account(
                    platform=platform,
                    handle=handle,
                    name=name,
                    platform_id=entry.id,
                    labels=tuple(sorted(entry.labels.items())) if entry.labels else (),
                )
            )
