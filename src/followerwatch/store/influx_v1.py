"""The InfluxDB v1 HTTP API (`/write`, `/query`, `/ping`): spoken by 1.x, 2.x and 3 Core alike."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from followerwatch.errors import DatabaseMissingError, StoreAuthError, StoreError
from followerwatch.models import Point
from followerwatch.store.lineprotocol import PRECISIONS, encode

# The v1 API spells microseconds and nanoseconds "u" and "n"; 1.x silently reads an unknown
# precision such as "us" as nanoseconds, which would shift every point by a factor of 1000.
V1_PRECISION = {"s": "s", "ms": "ms", "us": "u", "ns": "n"}

# Well below 1.x's 25 MB and 3 Core's 10 MB body limits even if every character took 4 bytes.
_MAX_BATCH_CHARS = 2_000_000
_MAX_ERROR_CHARS = 300
CREATE_HINT = "create it, or set influxdb.create_database = true"
# Characters InfluxQL cannot carry inside quotes: its reader turns CR into a newline and
# treats NUL as end of input.
_INFLUXQL_FORBIDDEN = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _quote(value: str, quote: str) -> str:
    if _INFLUXQL_FORBIDDEN.search(value):
        raise ValueError(f"{value!r} contains a control character InfluxQL cannot quote")
    escaped = value.replace("\\", "\\\\").replace(quote, "\\" + quote).replace("\n", "\\n")
    return quote + escaped + quote


def quote_ident(name: str) -> str:
    """Quote an InfluxQL identifier (database, measurement, tag or field key) as "..."."""
    return _quote(name, '"')


def quote_literal(value: str) -> str:
    """Quote an InfluxQL string literal as '...'."""
    return _quote(value, "'")


def redact_url(url: str) -> str:
    """The URL without user info, query or fragment, safe to show in messages and logs."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def server_error_text(response: httpx.Response) -> str:
    """The server's error message (1.x `error`, 2.x/3 `message`), one line, truncated."""
    text = response.text
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict):
        message = body.get("error") or body.get("message")
        if isinstance(message, str):
            text = message
    text = " ".join(text.split())
    if len(text) > _MAX_ERROR_CHARS:
        text = text[:_MAX_ERROR_CHARS] + "..."
    return text or response.reason_phrase or "no details"


def error_for_status(status: int, what: str, detail: str) -> StoreError:
    """Map an HTTP status from any InfluxDB generation to StoreError / StoreAuthError."""
    message = f"{what} failed with HTTP {status}: {detail}"
    if status in (401, 403):
        return StoreAuthError(
            f"{what}: InfluxDB refused the credentials ({status}): {detail}", status=status
        )
    if status in (400, 422):
        # The server judged the data itself bad; resending the same batch fails the same way.
        return StoreError(message, status=status, retryable=False)
    if status == 404:
        # Usually a database/bucket that does not exist yet: the data is fine, keep it.
        if "database not found" in detail:
            return DatabaseMissingError(f"{message}; {CREATE_HINT}", status=status)
        return StoreError(message, status=status, retryable=True)
    if status == 413:
        return StoreError(message, status=status, retryable=False)
    if status == 429 or status >= 500:
        return StoreError(message, status=status, retryable=True)
    return StoreError(message, status=status, retryable=False)


def retry_after_seconds(value: str | None) -> float | None:
    """Seconds from a `Retry-After` header in its seconds form; None otherwise."""
    try:
        seconds = float(value) if value else None
    except ValueError:
        return None
    return seconds if seconds is not None and 0 <= seconds < 86_400 else None


def chunk_lines(
    lines: Sequence[str], max_lines: int, max_chars: int = _MAX_BATCH_CHARS
) -> Iterator[str]:
    """Yield newline-joined bodies of at most max_lines lines and about max_chars characters."""
    batch: list[str] = []
    size = 0
    for line in lines:
        if batch and (len(batch) >= max_lines or size + len(line) + 1 > max_chars):
            yield "\n".join(batch)
            batch, size = [], 0
        batch.append(line)
        size += len(line) + 1
    if batch:
        yield "\n".join(batch)


def encode_points(points: Sequence[Point], precision: str) -> list[str]:
    """Encode every point first so a bad one fails the batch before anything is sent."""
    try:
        return [encode(point, precision) for point in points]
    except ValueError as exc:
        raise StoreError(f"cannot encode point: {exc}", retryable=False) from exc


class InfluxV1Store:
    """Writes and InfluxQL queries over the v1 HTTP API with a shared httpx.AsyncClient."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        url: str,
        database: str,
        username: str | None = None,
        password: str | None = None,
        token: str | None = None,
        precision: str = "s",
        retention_policy: str | None = None,
        max_batch_lines: int = 5000,
    ) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"unsupported precision {precision!r}; use one of {list(PRECISIONS)}")
        if max_batch_lines < 1:
            raise ValueError("max_batch_lines must be at least 1")
        if not database:
            raise ValueError("database must not be empty")
        self._client = client
        self._base = url.rstrip("/")
        self.display_url = redact_url(self._base)
        self.database = database
        self.precision = precision
        self.retention_policy = retention_policy
        self.max_batch_lines = max_batch_lines
        self._headers: dict[str, str] = {}
        # Credentials go in a header, never in the URL, where proxies and logs would keep them.
        if token:
            self._headers["Authorization"] = f"Token {token}"
        elif username is not None:
            pair = f"{username}:{password or ''}".encode()
            self._headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")

    async def write(self, points: Sequence[Point]) -> None:
        """Write points in chunks; if one fails, earlier ones stay written (replays overwrite)."""
        await self.write_lines(encode_points(points, self.precision))

    async def write_lines(self, lines: Sequence[str]) -> None:
        """Write already-encoded line protocol (at this store's precision) in chunks."""
        if not lines:
            return
        params = {"db": self.database, "precision": V1_PRECISION[self.precision]}
        if self.retention_policy:
            params["rp"] = self.retention_policy
        headers = {**self._headers, "Content-Type": "text/plain; charset=utf-8"}
        for body in chunk_lines(lines, self.max_batch_lines):
            response = await self._send(
                "POST",
                "/write",
                f"write to {self.display_url}",
                params=params,
                content=body.encode("utf-8"),
                headers=headers,
            )
            if response.status_code // 100 != 2:
                error = error_for_status(
                    response.status_code,
                    f"write to {self.display_url} (db {self.database!r})",
                    server_error_text(response),
                )
                error.retry_after = retry_after_seconds(response.headers.get("retry-after"))
                raise error

    async def query(self, influxql: str, *, epoch: str | None = "s") -> list[dict[str, Any]]:
        """Run InfluxQL on the database; return all series as {name, tags, columns, values}."""
        params = {"db": self.database}
        if epoch is not None:
            params["epoch"] = epoch
        what = f"query on {self.display_url} (db {self.database!r})"
        # The statement goes in the form body so it never lands in access logs.
        response = await self._send(
            "POST", "/query", what, params=params, data={"q": influxql}, headers=self._headers
        )
        if response.status_code // 100 != 2:
            raise error_for_status(response.status_code, what, server_error_text(response))
        try:
            body = response.json()
        except ValueError as exc:
            raise StoreError(f"{what}: response is not JSON", status=response.status_code) from exc
        return _flatten_series(body, what)

    async def check(self) -> None:
        """Verify the server answers, accepts the credentials and has the database."""
        what = f"InfluxDB at {self.display_url}"
        response = await self._send("GET", "/ping", what, headers=self._headers)
        # 1.x and 2.x answer 204; 3 Core answers 200 with a version document.
        if response.status_code not in (200, 204):
            raise error_for_status(
                response.status_code, f"ping {what}", server_error_text(response)
            )
        # SHOW MEASUREMENTS on a missing database succeeds silently on 1.6; SHOW RETENTION
        # POLICIES fails with "database not found" and needs only read rights.
        try:
            series = await self.query(
                f"SHOW RETENTION POLICIES ON {quote_ident(self.database)}", epoch=None
            )
        except StoreAuthError as exc:
            raise StoreAuthError(
                f"{what} refused the credentials for database {self.database!r}"
                f" (HTTP {exc.status})",
                status=exc.status,
            ) from exc
        except StoreError as exc:
            if "database not found" in str(exc):
                raise DatabaseMissingError(
                    f"{what} has no database {self.database!r}; {CREATE_HINT}",
                    status=exc.status,
                    retryable=False,
                ) from exc
            raise
        if self.retention_policy:
            names = {row[0] for item in series for row in item["values"] if row}
            if self.retention_policy not in names:
                raise StoreError(
                    f"{what} has no retention policy {self.retention_policy!r}"
                    f" on database {self.database!r}",
                    retryable=False,
                )

    async def create_database(self) -> None:
        """Create the database if it does not exist (1.x; needs admin rights when auth is on)."""
        await self.query(f"CREATE DATABASE {quote_ident(self.database)}", epoch=None)

    async def close(self) -> None:
        """Nothing to release: the HTTP client belongs to the caller."""

    async def _send(self, method: str, path: str, what: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._client.request(method, self._base + path, **kwargs)
        except httpx.TimeoutException as exc:
            raise StoreError(f"{what}: timed out ({type(exc).__name__})", retryable=True) from exc
        except httpx.HTTPError as exc:
            # httpx messages hold no credentials (they live in headers), so they are safe to show.
            raise StoreError(
                f"{what}: cannot reach the server ({type(exc).__name__}: {exc})", retryable=True
            ) from exc


def _flatten_series(body: object, what: str) -> list[dict[str, Any]]:
    if not isinstance(body, Mapping):
        raise StoreError(f"{what}: unexpected response shape", retryable=False)
    if "error" in body:
        raise StoreError(f"{what}: {body['error']}", retryable=False)
    series: list[dict[str, Any]] = []
    for result in body.get("results") or ():
        if not isinstance(result, Mapping):
            continue
        if "error" in result:
            raise StoreError(f"{what}: {result['error']}", retryable=False)
        for item in result.get("series") or ():
            series.append(
                {
                    "name": item.get("name", ""),
                    "tags": dict(item.get("tags") or {}),
                    "columns": list(item.get("columns") or []),
                    "values": [list(row) for row in item.get("values") or []],
                }
            )
    return series
