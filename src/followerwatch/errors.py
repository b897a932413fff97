"""The error tree.

FollowerwatchError
├── ConfigError                 invalid configuration (CLI exits 2)
├── SourceError                 a whole batch failed; raised by sources, handled by the collector
│   ├── AuthError               credentials refused (401/403); do not retry in a loop
│   ├── RateLimitedError        over the platform's limit; `retry_at` says when to try again
│   ├── NotFoundError           the endpoint or the single requested account does not exist
│   └── TransientError          network errors, 5xx, malformed bodies: retry next cycle
├── StoreError                  InfluxDB write/query failed
│   ├── StoreAuthError          InfluxDB refused the credentials
│   └── DatabaseMissingError    the database does not exist (yet)
├── StateFileError              a local SQLite file is damaged or read-only (CLI exits 1)
└── DeliveryError               a notifier could not deliver; `permanent` means do not retry
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path


class FollowerwatchError(Exception):
    """Base of every error followerwatch raises on purpose."""


class ConfigError(FollowerwatchError):
    """Invalid configuration; the message is one line naming file, key and problem."""


class SourceError(FollowerwatchError):
    """A source could not fetch a batch."""


class AuthError(SourceError):
    """The platform refused the credentials."""


class RateLimitedError(SourceError):
    """The platform's rate limit is exhausted until `retry_at`.

    `not_believed` is the reset the platform named when it lay beyond the platform's
    `max_backoff`: `retry_at` is then the end of that shorter wait.
    """

    def __init__(
        self,
        message: str,
        retry_at: datetime | None = None,
        not_believed: datetime | None = None,
    ) -> None:
        super().__init__(message)
        self.retry_at = retry_at
        self.not_believed = not_believed


class NotFoundError(SourceError):
    """The requested resource does not exist."""


class TransientError(SourceError):
    """A failure worth retrying later: network, 5xx, or a malformed response."""


class StoreError(FollowerwatchError):
    """Writing to or querying InfluxDB failed."""

    def __init__(self, message: str, status: int | None = None, retryable: bool = True) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        # Seconds the server asked us to wait (503/429 `Retry-After`), when it said.
        self.retry_after: float | None = None


class StoreAuthError(StoreError):
    """InfluxDB refused the credentials."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message, status=status, retryable=False)


class DatabaseMissingError(StoreError):
    """The InfluxDB database does not exist (yet): the data is fine, keep it."""


class StateFileError(FollowerwatchError):
    """A local SQLite file (state, spool) that cannot be used as it is; never replaced silently."""

    def __init__(self, path: Path, problem: str, fix: str, *, damaged: bool = False) -> None:
        super().__init__(f"{path} {problem}; {fix}")
        self.path = path
        self.problem = problem
        self.damaged = damaged  # its content is bad (--reset-state may set it aside)


class StateUnavailable(FollowerwatchError):
    """The shared state database (PostgreSQL) cannot be opened at start-up."""


class DeliveryError(FollowerwatchError):
    """A notifier failed; `permanent` errors (4xx, bad config) are not retried."""

    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent
