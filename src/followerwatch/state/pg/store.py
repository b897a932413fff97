"""Rule state and last counts on PostgreSQL: the mirror of the held shards and its committer."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from followerwatch.state.pg.committer import MAX_PENDING, PgCommitter, WriteEvents, no_events
from followerwatch.state.pg.connect import connect
from followerwatch.state.pg.mirror import ShardMirror

Key = tuple[str, str]


class PgRules:
    """Rule states: read from the mirror, written through the committer."""

    def __init__(self, mirror: ShardMirror, committer: PgCommitter) -> None:
        """Read `mirror`; write through `committer`."""
        self._mirror = mirror
        self._committer = committer

    def rule_states(self, platform: str, account: str) -> dict[str, str]:
        """Serialised rule states of an account, by rule name."""
        return self._mirror.rule_states(platform, account)

    def rule_states_many(
        self, keys: Iterable[Key], summaries: Mapping[Key, str] | None = None
    ) -> dict[Key, dict[str, str]]:
        """`rule_states` of many keys (see ShardMirror.rule_states_many)."""
        return self._mirror.rule_states_many(keys, summaries)

    def set_rule_state(self, platform: str, account: str, rule: str, state: str) -> None:
        """Store one rule state outside a poll (campaign phases)."""
        self._committer.set_rule_state(platform, account, rule, state)


class PgState:
    """What a replica keeps of rule state and last counts; `load`/`drop` follow its leases."""

    def __init__(
        self,
        dsn: str,
        replica: str,
        *,
        shard_of: Callable[[Key], int],
        fence_of: Callable[[int], int | None],
        write_events: WriteEvents = no_events,
        max_pending: int = MAX_PENDING,
        after_commit: Callable[[], None] | None = None,
    ) -> None:
        """Write as `replica`; `fence_of(shard)`: the fence held now (None: shard not held)."""
        self._dsn = dsn
        self.mirror = ShardMirror()
        self.committer = PgCommitter(
            dsn,
            replica,
            self.mirror,
            shard_of=shard_of,
            fence_of=fence_of,
            write_events=write_events,
            max_pending=max_pending,
            after_commit=after_commit,
        )
        self.accounts = self.mirror
        self.rules = PgRules(self.mirror, self.committer)

    def load(self, *shards: int) -> None:
        """Read shards just taken (their leases held) from PostgreSQL into the mirror."""
        with connect(self._dsn) as conn:
            for shard in shards:
                self.mirror.load(conn, shard)

    def drop(self, shard: int) -> None:
        """Forget a shard whose lease is gone."""
        self.mirror.drop(shard)

    def close(self) -> None:
        """Write what is queued (bounded wait) and stop the committer."""
        self.committer.close()
