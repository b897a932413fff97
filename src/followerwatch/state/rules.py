"""The rules' stored states, per account and rule (serialised by the rules themselves)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from followerwatch.state.rows import by_platform, immediate, parts, placeholders


class RuleStates:
    """The rule_state table: read per account or per batch; polls write it via commits."""

    def __init__(self, db: sqlite3.Connection) -> None:
        """Read and write through the loop's connection."""
        self._db = db

    def rule_states(self, platform: str, account: str) -> dict[str, str]:
        """Serialised rule states of an account, by rule name."""
        rows = self._db.execute(
            "SELECT rule, state FROM rule_state WHERE platform=? AND account=?", (platform, account)
        )
        return dict(rows.fetchall())

    def rule_states_many(
        self, keys: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], dict[str, str]]:
        """`rule_states` of many keys in a few queries; keys without state are left out."""
        out: dict[tuple[str, str], dict[str, str]] = {}
        for platform, names in by_platform(keys).items():
            for part in parts(names):
                rows = self._db.execute(
                    "SELECT account, rule, state FROM rule_state"
                    f" WHERE platform=? AND account IN ({placeholders(len(part))})",
                    (platform, *part),
                )
                for account, rule, state in rows.fetchall():
                    out.setdefault((platform, account), {})[rule] = state
        return out

    def set_rule_state(self, platform: str, account: str, rule: str, state: str) -> None:
        """Store one rule state outside a poll (campaign phases)."""
        with immediate(self._db):
            self._db.execute(
                "INSERT OR REPLACE INTO rule_state VALUES (?,?,?,?)",
                (platform, account, rule, state),
            )
