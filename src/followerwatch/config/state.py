"""`[state]`: where rule state, last counts, outbox and spool live: SQLite or PostgreSQL."""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_core import PydanticCustomError

from followerwatch.config.base import StrictModel
from followerwatch.config.fields import Duration
from followerwatch.config.files import CONFIG_KEY
from followerwatch.models import MAX_COUNT

# The lease TTL when none is set: three poll intervals, but never under this (seconds).
MIN_DEFAULT_TTL = 30.0
# A conninfo `password=` value: quoted (backslash escapes) or up to the next space.
_CONNINFO_PASSWORD = re.compile(r"(?:^|\s)password\s*=\s*('(?:[^'\\]|\\.)*'|\S+)")
_URL_SCHEMES = ("postgresql", "postgres")


def _dsn_problem(dsn: str) -> str | None:
    """Why `dsn` is neither a postgresql:// URL nor a key=value string (None: it may be one).

    libpq parses it for real on connect; this catches the obvious mistakes at load time.
    The DSN itself never goes into the message: it may hold a password.
    """
    scheme, sep, _ = dsn.partition("://")
    if sep:
        if scheme.lower() not in _URL_SCHEMES:
            return "must be a postgresql:// URL or a libpq key=value string"
        try:
            urlsplit(dsn).port  # noqa: B018 - raises for a port out of range or not a number
        except ValueError:
            return "the port must be a number from 1 to 65535"
        return None
    if "=" not in dsn:
        return "must be a postgresql:// URL or a libpq key=value string (host=... dbname=...)"
    return None


def dsn_password(dsn: str) -> str | None:
    """The password written in a DSN (URL or key=value), for log redaction; None if none."""
    if "://" in dsn:
        try:
            password = urlsplit(dsn).password
        except ValueError:
            return None
        return unquote(password) if password else None
    match = _CONNINFO_PASSWORD.search(dsn)
    if match is None:
        return None
    value = match[1]
    if value.startswith("'") and value.endswith("'") and len(value) >= 2:
        value = re.sub(r"\\(.)", r"\1", value[1:-1])
    return value or None


class StateConfig(StrictModel):
    """The state backend: one process's SQLite file, or a PostgreSQL shared by replicas."""

    backend: Literal["sqlite", "postgresql"] = "sqlite"
    # A libpq connection string or postgresql:// URL (or dsn_file); postgresql only.
    dsn: SecretStr | None = None
    # Virtual shards the watchlist is cut into; replicas lease them (postgresql only).
    shards: int = Field(default=64, ge=1, le=1024)
    # How long a lease outlives its holder's last renewal; None: lease_ttl_for's default.
    lease_ttl: Duration | None = None
    # Rule work held in memory while PostgreSQL is down; past it the oldest is dropped (counted).
    max_pending: int = Field(default=100_000, ge=0, le=MAX_COUNT)

    @field_validator("lease_ttl")
    @classmethod
    def _ttl_floor(cls, value: float | None) -> float | None:
        # Renewals run every third of the TTL: under a second they would be a busy loop.
        if value is not None and value < 1.0:
            raise ValueError("must be at least 1s")
        return value

    @field_validator("dsn")
    @classmethod
    def _dsn_shape(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            problem = _dsn_problem(value.get_secret_value().strip())
            if problem is not None:
                raise PydanticCustomError("dsn", problem)
        return value

    @model_validator(mode="after")
    def _dsn_for_backend(self) -> StateConfig:
        if self.backend == "postgresql" and self.dsn is None:
            raise PydanticCustomError(
                "dsn",
                'required with backend = "postgresql" (set dsn or dsn_file)',
                {CONFIG_KEY: "dsn"},
            )
        if self.backend == "sqlite" and self.dsn is not None:
            raise PydanticCustomError(
                "dsn",
                'is only used with backend = "postgresql"; set that backend or remove dsn',
                {CONFIG_KEY: "dsn"},
            )
        return self

    def lease_ttl_for(self, interval_seconds: float) -> float:
        """The lease TTL in seconds: `lease_ttl`, else three poll intervals, at least 30 s."""
        if self.lease_ttl is not None:
            return self.lease_ttl
        return max(3.0 * interval_seconds, MIN_DEFAULT_TTL)

    def secrets(self) -> list[str]:
        """The DSN and the password inside it, for log redaction."""
        if self.dsn is None:
            return []
        dsn = self.dsn.get_secret_value()
        password = dsn_password(dsn)
        return [dsn] if password is None else [dsn, password]
