"""Shard leases in PostgreSQL: which replica polls which virtual shard, with fencing numbers.

Every replica ticks every `RENEW_FRACTION` of the TTL. One tick is one transaction on the
database clock: it marks the replica alive, renews the leases it still holds, gives up those
beyond its fair share and claims free or expired ones up to it. Each claim bumps the shard's
fence, and every write for a shard checks it (`check_fence`), so a replica that lost a lease
cannot overwrite the state of the one that took the shard after it.

The leases table holds one row per shard below the configured count (made here, idempotently);
rows at or above it (left by a larger count) are never claimed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
import structlog

from followerwatch.state.pg.connect import connect

log = structlog.get_logger("followerwatch.leases")

# A replica renews its leases every third of the TTL: two renewals may fail before they lapse.
RENEW_FRACTION = 1 / 3
DEFAULT_SHARDS = 64
# Rows of replicas gone this long (in TTLs) are deleted; until then `check` still shows them.
FORGET_AFTER_TTLS = 10

Conn = psycopg.Connection[Any]


def default_ttl(interval_seconds: float) -> float:
    """The lease TTL for a poll interval: three intervals, at least 30 seconds."""
    return max(30.0, 3 * interval_seconds)


def renew_every(ttl: float) -> float:
    """Seconds between ticks for a TTL."""
    return ttl * RENEW_FRACTION


class Fenced(Exception):
    """A write for a shard whose lease the writer no longer holds with that fence."""

    def __init__(self, shard: int, holder: str, fence: int) -> None:
        """Name the shard, the would-be writer and the fence it holds."""
        super().__init__(f"shard {shard}: {holder!r} no longer holds the lease with fence {fence}")
        self.shard = shard
        self.holder = holder
        self.fence = fence


def check_fence(cur: Conn | psycopg.Cursor[Any], shard: int, holder: str, fence: int) -> None:
    """Raise Fenced unless `holder` holds `shard` with `fence`, unexpired (locks it FOR SHARE).

    Call it inside the writing transaction, before the write: the share lock keeps the lease
    from being renewed, released or claimed until that transaction ends. Check several shards
    in ascending order, the order a tick locks its leases in, so the two cannot deadlock.
    """
    if not holds(cur, shard, holder, fence):
        raise Fenced(shard, holder, fence)


def holds(cur: Conn | psycopg.Cursor[Any], shard: int, holder: str, fence: int) -> bool:
    """Whether `holder` holds `shard` with `fence`, unexpired; locks the lease FOR SHARE."""
    row = cur.execute(
        "SELECT 1 FROM leases WHERE shard = %s AND holder = %s AND fence = %s"
        " AND expires > now() FOR SHARE",
        (shard, holder, fence),
    ).fetchone()
    return row is not None


@dataclass(frozen=True)
class Lease:
    """One held shard and the fence it was claimed with."""

    shard: int
    fence: int


@dataclass(frozen=True)
class Gain:
    """A shard claimed in a tick.

    `handover`: another replica held the shard since this one last did (its state moves here);
    `continued`: nobody claimed it since this replica last held it (fence = its old fence + 1).
    """

    shard: int
    fence: int
    previous: str | None
    handover: bool
    continued: bool


@dataclass(frozen=True)
class Held:
    """What one tick left this replica holding, and what changed."""

    leases: tuple[Lease, ...]
    live: int
    gained: tuple[Gain, ...] = ()
    lost: frozenset[int] = frozenset()
    released: frozenset[int] = frozenset()
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the tick reached the database."""
        return self.error is None

    @property
    def fences(self) -> dict[int, int]:
        """Shard -> fence of every lease held."""
        return {lease.shard: lease.fence for lease in self.leases}

    @property
    def shards(self) -> frozenset[int]:
        """The shards held."""
        return frozenset(lease.shard for lease in self.leases)


@dataclass(frozen=True)
class ReplicaRow:
    """One replica as the database sees it, for `followerwatch check`."""

    id: str
    name: str
    seen: datetime
    expires: datetime
    live: bool
    shards: tuple[int, ...]


def list_replicas(conn: Conn) -> list[ReplicaRow]:
    """Every replica row with the shards it holds unexpired, by id."""
    rows = conn.execute(
        "SELECT r.id, r.name, r.seen, r.expires, r.expires > now(),"
        " coalesce(array_agg(l.shard ORDER BY l.shard) FILTER (WHERE l.shard IS NOT NULL), '{}')"
        " FROM replicas r LEFT JOIN leases l ON l.holder = r.id AND l.expires > now()"
        ' GROUP BY r.id ORDER BY r.id COLLATE "C"'
    ).fetchall()
    return [
        ReplicaRow(str(r[0]), str(r[1]), r[2], r[3], bool(r[4]), tuple(int(s) for s in r[5]))
        for r in rows
    ]


def fair_share(shards: int, live_ids: list[str], me: str) -> int:
    """This replica's target: shards // live, one more for the first shards % live by id."""
    live = len(live_ids)
    if live == 0 or me not in live_ids:
        return 0
    return shards // live + (1 if live_ids.index(me) < shards % live else 0)


_INTERVAL = "make_interval(secs => %(ttl)s)"
_UPSERT = (
    "INSERT INTO replicas (id, name, seen, expires) VALUES"
    f" (%(me)s, %(name)s, now(), now() + {_INTERVAL})"
    " ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, seen = EXCLUDED.seen,"
    " expires = EXCLUDED.expires"
)
# Locked in shard order (see check_fence) before they are renewed.
_RENEW = (
    f"UPDATE leases SET expires = now() + {_INTERVAL} WHERE shard IN ("
    " SELECT shard FROM leases WHERE holder = %(me)s AND expires > now() AND shard < %(n)s"
    " ORDER BY shard FOR UPDATE) RETURNING shard, fence"
)
_RELEASE = "UPDATE leases SET holder = NULL, expires = '-infinity' WHERE shard = ANY(%(shards)s)"
# This replica's own expired leases first: after an outage each replica re-takes its shards.
_CANDIDATES = (
    "SELECT shard, holder, fence FROM leases"
    " WHERE shard < %(n)s AND (holder IS NULL OR expires <= now()) {only_own}"
    " ORDER BY (holder IS NOT DISTINCT FROM %(me)s) DESC, shard"
    " LIMIT %(need)s FOR UPDATE SKIP LOCKED"
)
_CLAIM = (
    f"UPDATE leases SET holder = %(me)s, fence = fence + 1, expires = now() + {_INTERVAL}"
    " WHERE shard = ANY(%(shards)s) RETURNING shard, fence"
)


class LeaseTable:
    """One replica's leases: tick() keeps them, release_all() gives them up (thread-safe)."""

    def __init__(
        self,
        dsn: str,
        replica_id: str,
        name: str,
        *,
        shards: int = DEFAULT_SHARDS,
        ttl: float = 30.0,
        forget_after: float | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        """A replica's view of the lease table; connects on first use.

        `forget_after`: seconds after which a lapsed replica's row is deleted (10 TTLs).
        """
        if shards < 1 or ttl <= 0:
            raise ValueError("shards must be at least 1 and ttl positive")
        self.dsn = dsn
        self.replica_id = replica_id
        self.name = name
        self.shards = shards
        self.ttl = ttl
        self.forget_after = FORGET_AFTER_TTLS * ttl if forget_after is None else forget_after
        self._monotonic = monotonic
        self._conn: Conn | None = None
        self._lock = threading.Lock()
        self._held: dict[int, int] = {}
        # The fence this replica last held each shard with, to tell a continuation from a handover.
        self._last_fence: dict[int, int] = {}
        self._deadline = 0.0
        self._live = 0
        self.renewals = 0
        self.renewal_failures = 0
        self.handovers = 0
        self.claims = 0
        self.releases = 0

    def _connection(self) -> Conn:
        if self._conn is None or self._conn.closed:
            conn = connect(self.dsn)
            try:
                with conn.transaction():
                    conn.execute(
                        "INSERT INTO leases (shard) SELECT generate_series(0, %s - 1)"
                        " ON CONFLICT DO NOTHING",
                        (self.shards,),
                    )
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def close(self) -> None:
        """Close the connection (the leases stay until they expire or release_all)."""
        with self._lock:
            self._drop_connection()

    def held(self) -> dict[int, int]:
        """Shard -> fence of the leases held now: none once the local deadline has passed."""
        with self._lock:
            if self._monotonic() >= self._deadline:
                return {}
            return dict(self._held)

    def tick(self) -> Held:
        """Renew, rebalance and claim in one transaction; count a database error, never raise it."""
        with self._lock:
            started = self._monotonic()
            try:
                return self._tick(started)
            except psycopg.Error as exc:
                self._drop_connection()
                self.renewal_failures += 1
                # Counted; the replica logs once when renewals fail and once when they work again.
                log.debug("lease renewal failed", replica=self.replica_id, error=str(exc))
                return self._expire_locally(f"{type(exc).__name__}: {exc}")

    def _expire_locally(self, error: str) -> Held:
        # The database may have let the leases lapse; trust them only until the local deadline,
        # which started before the last successful tick's transaction did.
        lost: frozenset[int] = frozenset()
        if self._held and self._monotonic() >= self._deadline:
            lost = frozenset(self._held)
            self._held = {}
        return Held(self._leases(), self._live, lost=lost, error=error)

    def _leases(self) -> tuple[Lease, ...]:
        return tuple(Lease(shard, fence) for shard, fence in sorted(self._held.items()))

    def _tick(self, started: float) -> Held:
        conn = self._connection()
        me = self.replica_id
        args: dict[str, Any] = {"me": me, "name": self.name, "ttl": self.ttl, "n": self.shards}
        with conn.transaction():
            mine = conn.execute(
                "SELECT expires > now() FROM replicas WHERE id = %(me)s", args
            ).fetchone()
            # Its own row (or, if another replica deleted it, its local deadline) lapsed: this
            # replica was cut off, and so may the others have been (a database outage). It
            # re-takes only its own shards this tick, leaving the others one tick to come back
            # before their shards count as abandoned.
            cut_off = (mine is not None and not mine[0]) or 0 < self._deadline <= started
            conn.execute(_UPSERT, args)
            conn.execute(
                "DELETE FROM replicas WHERE expires < now() - make_interval(secs => %s)",
                (self.forget_after,),
            )
            live_ids = [
                str(row[0])
                for row in conn.execute(
                    'SELECT id FROM replicas WHERE expires > now() ORDER BY id COLLATE "C"'
                )
            ]
            renewed = {int(s): int(f) for s, f in conn.execute(_RENEW, args).fetchall()}
            target = fair_share(self.shards, live_ids, me)
            extras = sorted(renewed, reverse=True)[: max(0, len(renewed) - target)]
            if extras:
                conn.execute(_RELEASE, {"shards": extras})
            need = target - (len(renewed) - len(extras))
            claimed: list[tuple[int, str | None, int, int]] = []
            if need > 0:
                only_own = "AND (holder IS NULL OR holder = %(me)s)" if cut_off else ""
                query = _CANDIDATES.format(only_own=only_own)
                before = {
                    int(s): (None if h is None else str(h), int(f))
                    for s, h, f in conn.execute(query, {**args, "need": need}).fetchall()
                }
                if before:
                    rows = conn.execute(_CLAIM, {**args, "shards": sorted(before)}).fetchall()
                    claimed = [(int(s), *before[int(s)], int(f)) for s, f in rows]
        return self._apply(started, len(live_ids), renewed, extras, claimed)

    def _apply(
        self,
        started: float,
        live: int,
        renewed: Mapping[int, int],
        extras: list[int],
        claimed: list[tuple[int, str | None, int, int]],
    ) -> Held:
        gained: list[Gain] = []
        now_held = {s: f for s, f in renewed.items() if s not in extras}
        for shard, fence in now_held.items():
            if self._held.get(shard) != fence:
                # Held in the database but not known here (a commit whose answer was lost).
                continued = self._last_fence.get(shard) == fence - 1
                gained.append(Gain(shard, fence, self.replica_id, not continued, continued))
        for shard, previous, old_fence, fence in claimed:
            continued = self._last_fence.get(shard) == old_fence
            handover = old_fence > 0 and not continued
            gained.append(Gain(shard, fence, previous, handover, continued))
            now_held[shard] = fence
        self.renewals += 1
        self.claims += len(claimed)
        self.handovers += sum(1 for gain in gained if gain.handover)
        self.releases += len(extras)
        lost = frozenset(self._held) - frozenset(now_held)
        self._held = now_held
        self._last_fence.update(now_held)
        self._deadline = started + self.ttl
        self._live = live
        return Held(
            self._leases(),
            live,
            gained=tuple(sorted(gained, key=lambda gain: gain.shard)),
            lost=lost,
            released=frozenset(extras),
        )

    def check(self, cur: Conn | psycopg.Cursor[Any], shard: int) -> int:
        """check_fence with this replica's fence for `shard`; return the fence."""
        fence = self.held().get(shard)
        if fence is None:
            raise Fenced(shard, self.replica_id, -1)
        check_fence(cur, shard, self.replica_id, fence)
        return fence

    def release_all(self) -> int:
        """Give up every lease and delete this replica's row (SIGTERM); return how many.

        The local view is emptied first, so a database error (raised) still stops the polling.
        """
        with self._lock:
            self._held = {}
            self._deadline = 0.0
            try:
                conn = self._connection()
                with conn.transaction():
                    count = conn.execute(
                        "UPDATE leases SET holder = NULL, expires = '-infinity' WHERE holder = %s",
                        (self.replica_id,),
                    ).rowcount
                    conn.execute("DELETE FROM replicas WHERE id = %s", (self.replica_id,))
            except psycopg.Error:
                self._drop_connection()
                raise
            self.releases += count
            return count

    def replicas(self) -> list[ReplicaRow]:
        """Every replica row and the shards it holds (see list_replicas)."""
        with self._lock:
            try:
                conn = self._connection()
                with conn.transaction():
                    return list_replicas(conn)
            except psycopg.Error:
                self._drop_connection()
                raise
