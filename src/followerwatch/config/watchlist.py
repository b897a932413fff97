"""The [[watch]] entries: their model, and their resolution into accounts and rules."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType
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
        _check_labels(value)
        return value


def _check_labels(labels: Mapping[str, str]) -> None:
    """Reject label keys that are not identifiers (or are reserved) and unstorable values."""
    for key, val in labels.items():
        if not _LABEL_KEY.match(key) or key in _RESERVED_TAGS:
            raise ValueError(f"label key {key!r} must be an identifier and not {_RESERVED_TAGS}")
        _storable(val, f"label {key!r}")


_WATCH_LIST = TypeAdapter(list[WatchEntry])
_RULE_KEYS = frozenset(RuleDefaults.model_fields)
# The keys a plain entry may have: its identity, and rule keys by name or alias ("for").
_IDENTITY = frozenset({"platform", "handle", "name", "id", "labels"})
_RULE_INPUTS = _RULE_KEYS | {f.alias for f in RuleDefaults.model_fields.values() if f.alias}
_PLAIN_SCALARS = (str, int, float, bool)
# Entries validated per pydantic call: big enough to amortise the call, small enough that the
# models of one chunk (about 1 KB each) never add up to much.
CHUNK = 2000

RuleMap = dict[tuple[str, str], RuleDefaults]
# An entry ready for the builder: platform, handle, name, id, labels, its resolved rules.
_Ready = tuple[str, str, str | None, str | None, Mapping[str, str], RuleDefaults]


def resolve_watch(
    pieces: Iterable[object], defaults: Mapping[str, RuleDefaults], where: str
) -> tuple[list[Account], RuleMap]:
    """The accounts and resolved rules of the entry lists in `pieces`, consumed as they go.

    Entries are taken a chunk at a time, and a chunk's raw dicts are dropped once they are
    accounts. A chunk of plain entries (the usual watchlist: text keys and a few rule keys) is
    read straight from its dicts, each distinct rule config validated once; any other chunk is
    validated as models (which a plain chunk would pass: the fast path only skips the work).
    Errors are those of a single pass: the first validation error (counting all), else the
    first bad handle or duplicate.
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
            clean = failure is None and builder.error is None
            if clean and builder.add_plain(chunk, base + start):
                raw[start : start + CHUNK] = [None] * len(chunk)
                continue
            try:
                entries = _WATCH_LIST.validate_python(chunk)
            except ValidationError as exc:
                if failure is None:
                    failure = (exc, base + start, chunk)
                else:
                    more += exc.error_count()
                continue
            if clean:
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


def _plain_value(value: object) -> bool:
    """Whether `value` is TOML-shaped data (text, numbers, lists, tables), so that its repr
    tells it apart from any other value: a safe cache key for what validation makes of it."""
    if type(value) in _PLAIN_SCALARS:
        return True
    if isinstance(value, list) and type(value) is list:
        return all(_plain_value(v) for v in value)
    if isinstance(value, dict) and type(value) is dict:
        return all(type(k) is str and _plain_value(v) for k, v in value.items())
    return False


def _plain_labels(labels: object) -> bool:
    """Whether `labels` is a table of text that WatchEntry would accept as it is."""
    if type(labels) is not dict:
        return False
    if not all(type(k) is str and type(v) is str for k, v in labels.items()):
        return False
    try:
        _check_labels(labels)
    except ValueError:
        return False
    return True


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
        # The same, by what a plain entry wrote (its platform and the repr of its rule keys).
        self._written: dict[tuple[str, str], RuleDefaults] = {}

    def _head(self, index: int, platform: str, handle: str) -> str:
        return f"{self.where}: watch[{index}] ({platform}/{safe_text(handle)})"

    def _shared(self, platform: str, own: RuleDefaults | WatchEntry) -> RuleDefaults:
        """The platform's rules with `own`'s set rule keys over them, one object per config."""
        keys = sorted(own.model_fields_set & _RULE_KEYS)
        if not keys:
            return self.defaults[platform]
        # repr tells apart what equality would not (1 and 1.0), and it hashes.
        key = (platform, repr([(k, getattr(own, k)) for k in keys]))
        rule = self._merged.get(key)
        if rule is None:
            rule = self._merged[key] = own.merged_over(self.defaults[platform])
        return rule

    def add(self, entries: list[WatchEntry], start: int) -> None:
        """Resolve validated `entries`, the first at index `start`; stop at the first bad one."""
        platforms, shared = self._platforms, self._shared
        self._add(
            (
                (p, e.handle, e.name, e.id, e.labels, shared(p, e))
                for e in entries
                for p in (platforms[e.platform],)
            ),
            start,
        )

    def add_plain(self, chunk: list[Any], start: int) -> bool:
        """Resolve `chunk` straight from its dicts if every entry is plain; else add nothing
        and return False (the chunk is then validated as models)."""
        ready: list[_Ready] = []
        for raw in chunk:
            entry = self._plain(raw)
            if entry is None:
                return False
            ready.append(entry)
        self._add(ready, start)
        return True

    def _plain(self, raw: object) -> _Ready | None:
        """`raw` ready for the builder, when it is an entry that validation would take as it
        is; None for anything else (an error, a shorthand's value that is not TOML data...)."""
        if type(raw) is not dict:
            return None
        platform, handle = raw.get("platform"), raw.get("handle")
        if type(platform) is not str or type(handle) is not str:
            return None
        platform = self._platforms.get(platform)
        name, pid, labels = raw.get("name"), raw.get("id"), raw.get("labels", _NO_LABELS)
        if platform is None or (pid is not None and type(pid) is not str):
            return None
        if name is not None:
            if type(name) is not str:
                return None
            try:
                _storable(name)
            except ValueError:
                return None
        if labels is not _NO_LABELS and not _plain_labels(labels):
            return None
        rule_keys = raw.keys() - _IDENTITY
        if not rule_keys:
            return platform, handle, name, pid, labels, self.defaults[platform]
        if not rule_keys <= _RULE_INPUTS or {"for", "for_polls"} <= rule_keys:
            return None
        own = {k: v for k, v in raw.items() if k in rule_keys}
        for value in own.values():
            if type(value) not in _PLAIN_SCALARS and not _plain_value(value):
                return None
        written = (platform, repr(own))
        rules = self._written.get(written)
        if rules is None:
            try:
                validated = RuleDefaults.model_validate(own)
            except ValidationError:
                return None
            rules = self._written[written] = self._shared(platform, validated)
        return platform, handle, name, pid, labels, rules

    def _add(self, entries: Iterable[_Ready], start: int) -> None:
        """Add resolved entries, the first at index `start`; stop at the first bad one."""
        accounts, rules, seen, valid = self.accounts, self.rules, self._seen, _VALID_HANDLE
        for index, (platform, handle, name, pid, labels, rule) in enumerate(entries, start):
            if not valid[platform](handle):
                spec = REGISTRY[platform]
                self.error = ConfigError(
                    f"{self._head(index, platform, handle)}.handle: not a valid {spec.title} "
                    f"handle (must match {spec.handle_pattern.pattern})"
                )
                return
            name = name or handle
            lowered = handle.lower()
            folded = handle if lowered == handle else lowered
            if folded in seen[platform] or (platform, name) in rules:
                self.error = ConfigError(
                    f"{self._head(index, platform, handle)}: duplicate of an earlier entry "
                    f"on {platform}"
                )
                return
            seen[platform].add(folded)
            account = Account(
                platform, handle, name, pid, tuple(sorted(labels.items())) if labels else ()
            )
            # Keyed by the account's own key tuple: one tuple per account, shared by every
            # per-account map built from these rules.
            rules[account.key] = rule
            accounts.append(account)


_NO_LABELS: Mapping[str, str] = MappingProxyType({})
_VALID_HANDLE = {key: spec.handle_pattern.match for key, spec in REGISTRY.items()}
