"""What the writer has seen of InfluxDB and of the state database: the backoff, refused
credentials, and the operational events they raise."""

from __future__ import annotations

import random
import sqlite3
import uuid
from collections.abc import Callable

import psycopg
import structlog

from followerwatch.clock import Clock
from followerwatch.disk.full import out_of_space
from followerwatch.errors import StoreAuthError, StoreError
from followerwatch.models import Event, EventKind, EventStatus, Severity

log = structlog.get_logger("followerwatch.writer")

AUTH_RECHECK = 60.0

Ledger = Callable[[], dict[str, int]]


class WriteHealth:
    """InfluxDB's last answers (failures in a row, when to try again, refused credentials), and
    whether the state database answered; raises the operational events they call for."""

    def __init__(
        self,
        clock: Clock,
        *,
        backoff_initial: float,
        backoff_max: float,
        rng: random.Random,
        raise_event: Callable[[Event], None] | None,
    ) -> None:
        self.clock = clock
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self._rng = rng
        self._raise_event = raise_event
        self.auth_failed = False
        self.last_error: str | None = None  # the last write failure, until a write works
        self.failures = 0
        self.next_attempt = 0.0
        self.state_down = False  # the state database failed (logged once until it works)

    def backing_off(self) -> bool:
        """Whether a backoff (or an auth recheck) keeps writes from InfluxDB now."""
        return self.clock.now().timestamp() < self.next_attempt

    def failed(self, exc: StoreError, ledger: Ledger) -> None:
        """A write failed: wait (longer each time, or as Retry-After asks) before the next."""
        now = self.clock.now().timestamp()
        self.last_error = str(exc)
        if isinstance(exc, StoreAuthError):
            if not self.auth_failed:
                self.event(
                    EventKind.INFLUXDB_AUTH,
                    EventStatus.FIRING,
                    Severity.CRITICAL,
                    f"InfluxDB refused followerwatch's credentials; spooling: {exc}",
                    0,
                )
                log.error(
                    "influxdb refused the credentials; spooling until they work",
                    error=str(exc),
                    **ledger(),
                )
            self.auth_failed = True
            self.next_attempt = now + AUTH_RECHECK
            return
        self.failures += 1
        wait = min(self.backoff_max, self.backoff_initial * 2.0 ** (self.failures - 1))
        wait *= self._rng.uniform(0.5, 1.0)
        if exc.retry_after is not None:
            wait = max(wait, exc.retry_after)
        self.next_attempt = now + wait
        if self.failures == 1:
            log.warning(
                "influxdb write failed; spooling and retrying",
                error=str(exc),
                retry_in_s=round(wait, 1),
                **ledger(),
            )

    def recovered(self, backlog: Callable[[], int], ledger: Ledger) -> None:
        """A write went through: no backoff; refused credentials resolved."""
        if self.auth_failed:
            self.event(
                EventKind.INFLUXDB_OK,
                EventStatus.RESOLVED,
                Severity.INFO,
                "InfluxDB accepts followerwatch's writes again",
                backlog(),
            )
        if self.auth_failed or self.failures:
            log.info("influxdb writes work again", **ledger())
        self.auth_failed = False
        self.last_error = None
        self.failures = 0
        self.next_attempt = 0.0

    def state_failed(self, exc: psycopg.OperationalError) -> None:
        """The state database is down (logged once until it works again)."""
        if not self.state_down:
            log.error("state database unavailable: the writer skips its events", error=str(exc))
        self.state_down = True

    def state_ok(self) -> None:
        """The state database answered."""
        if self.state_down:
            log.info("state database reachable again: stored events are copied to InfluxDB")
            self.state_down = False

    def event(
        self, kind: EventKind, status: EventStatus, severity: Severity, message: str, value: int
    ) -> None:
        """An operational event, through the same outbox and routes as account events."""
        if self._raise_event is None:
            return
        now = self.clock.now()
        event = Event(
            id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"followerwatch:{kind}:{now.isoformat()}")),
            time=now,
            platform="followerwatch",
            account="service",
            rule="influxdb",
            kind=kind,
            value=value,
            threshold=0,
            message=message,
            severity=severity,
            status=status,
        )
        try:
            self._raise_event(event)
        except psycopg.OperationalError as exc:
            self.state_failed(exc)
            log.error("state database unavailable: operational event not stored", message=message)
        except sqlite3.Error as exc:
            if not out_of_space(exc):
                raise
            log.error("disk full: operational event not stored", message=message)
