"""What the state database knows of each account: its last count, history and held zeros."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from datetime import UTC, datetime

from followerwatch.state.behind import WriteBehind
from followerwatch.state.commit import HeldZero, LastSeen
from followerwatch.state.rows import by_platform, parts, placeholders, summary_text


class Accounts:
    """Reads of the accounts, history and suspect_zeros tables (polls write them via commits).

    Last counts are SQLite's with the ones still kept behind (not yet flushed) laid over them.
    """

    def __init__(self, db: sqlite3.Connection, behind: WriteBehind | None = None) -> None:
        """Read through the loop's connection, and `behind` (the committer's)."""
        self._db = db
        self._behind = WriteBehind() if behind is None else behind

    def last_seen(self, platform: str, account: str) -> LastSeen | None:
        """The last stored count of an account, if any."""
        row = self._db.execute(
            "SELECT followers, time, platform_id, handle FROM accounts"
            " WHERE platform=? AND account=?",
            (platform, account),
        ).fetchone()
        stored = (
            None
            if row is None
            else LastSeen(row[0], datetime.fromisoformat(row[1]), row[2], row[3])
        )
        return self._behind.over((platform, account), stored)

    def platform_ids_of(self, platform: str, accounts: Iterable[str]) -> dict[str, str]:
        """The stable platform ids learnt for these accounts of a platform, by account name."""
        out: dict[str, str] = {}
        names = list(dict.fromkeys(accounts))
        for part in parts(names):
            rows = self._db.execute(
                "SELECT account, platform_id FROM accounts WHERE platform=? AND platform_id IS"
                f" NOT NULL AND account IN ({placeholders(len(part))})",
                (platform, *part),
            )
            out.update(rows.fetchall())
        behind = self._behind
        if behind:
            for name in names:
                seen = behind.get((platform, name))
                if seen is not None and seen.platform_id is not None:
                    out[name] = seen.platform_id
        return out

    def last_seen_many(
        self,
        keys: Iterable[tuple[str, str]],
        summaries: dict[tuple[str, str], str] | None = None,
    ) -> dict[tuple[str, str], LastSeen]:
        """`last_seen` of many (platform, account) keys in a few queries; absent keys left out.

        With `summaries`, the stored summaries in the same rows are put there too (see
        RuleStates.rule_states_many), saving a second lookup of each row.
        """
        out: dict[tuple[str, str], LastSeen] = {}
        times: dict[str, datetime] = {}  # accounts polled together share their stored time
        wanted = by_platform(keys)
        extra = "" if summaries is None else ", summary"
        for platform, names in wanted.items():
            for part in parts(names):
                rows = self._db.execute(
                    f"SELECT account, followers, time, platform_id, handle{extra} FROM accounts"
                    f" WHERE platform=? AND account IN ({placeholders(len(part))})",
                    (platform, *part),
                )
                for account, followers, time, pid, handle, *summary in rows.fetchall():
                    when = times.get(time)
                    if when is None:
                        when = times[time] = datetime.fromisoformat(time)
                    out[(platform, account)] = LastSeen(followers, when, pid, handle)
                    if summary and summary[0] is not None and summaries is not None:
                        summaries[(platform, account)] = summary_text(summary[0])
        if self._behind:
            self._behind.overlay(out, ((p, a) for p, names in wanted.items() for a in names))
        return out

    def history(self, platform: str, account: str, since: datetime) -> list[tuple[datetime, int]]:
        """Stored counts of an account from `since` on, oldest first."""
        rows = self._db.execute(
            "SELECT time, followers FROM history WHERE platform=? AND account=? AND time>=?"
            " ORDER BY time",
            (platform, account, since.timestamp()),
        )
        return [(datetime.fromtimestamp(t, UTC), c) for t, c in rows.fetchall()]

    def history_many(
        self, keys: Iterable[tuple[str, str]], since: datetime
    ) -> dict[tuple[str, str], list[tuple[float, int]]]:
        """Stored (epoch seconds, count) of many accounts from `since` on, oldest first."""
        out: dict[tuple[str, str], list[tuple[float, int]]] = {}
        for platform, names in by_platform(keys).items():
            for part in parts(names):
                rows = self._db.execute(
                    "SELECT account, time, followers FROM history WHERE platform=? AND account"
                    f" IN ({placeholders(len(part))}) AND time>=? ORDER BY account, time",
                    (platform, *part, since.timestamp()),
                )
                for account, t, count in rows.fetchall():
                    out.setdefault((platform, account), []).append((t, count))
        return out

    def held_zeros(self) -> dict[tuple[str, str], list[HeldZero]]:
        """Every reading of 0 held as suspect, by account, oldest first."""
        out: dict[tuple[str, str], list[HeldZero]] = {}
        rows = self._db.execute(
            "SELECT platform, account, time, following, posts, platform_id, handle, resolution"
            " FROM suspect_zeros"
        )
        for row in rows.fetchall():
            held = HeldZero(row[0], row[1], datetime.fromisoformat(row[2]), *row[3:])
            out.setdefault((held.platform, held.account), []).append(held)
        for readings in out.values():
            readings.sort(key=lambda h: h.time)
        return out
